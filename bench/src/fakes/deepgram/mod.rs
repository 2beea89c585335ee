//! A fake Deepgram Voice Agent server (protocols.md §5), being written.
