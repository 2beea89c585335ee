//! Deepgram Voice Agent API (v1), protocols.md §5, as a sans-IO adapter (being written).
