//! Steady-state frames allocate nothing: caller frame in, provider delta in, mark echo
//! in, every output drained (and Twilio JSON written into a reused buffer), for a
//! pass-through call and for transcoded calls. A counting global allocator proves it.
//!
//! One test function per file on purpose: the allocator counts only on the measuring
//! thread, but a single test keeps the measurement free of other work.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{PCM24, loud_mulaw, media, settings};
use vocalized_media::core::session::{
    CallSession, CallerOutput, Input, Output, ProviderCommand, ProviderEvent, SessionConfig,
};
use vocalized_media::core::wire::twilio;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::plan::CallSource;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    // `try_with`: allocations during thread teardown must not touch a dead local.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP_FRAMES: usize = 100;
const MEASURED_FRAMES: usize = 1_000;

/// Runs `WARM_UP_FRAMES + MEASURED_FRAMES` 20 ms frames through a call and returns the
/// allocations counted during the measured ones.
fn allocations_per_steady_state(
    source: CallSource,
    provider_input: AudioFormat,
    provider_output: AudioFormat,
) -> u64 {
    let config = SessionConfig::new(source, "test", provider_input, provider_output, &settings());
    let mut session = CallSession::new(config).unwrap();
    let frames = WARM_UP_FRAMES + MEASURED_FRAMES;

    // Inputs are built up front: parsing is the driver's work, not the session's.
    let caller_twilio = media(&loud_mulaw(160));
    let caller_web = vec![2_000i16; 960];
    let delta_bytes = provider_output.bytes_per_ms().unwrap() as usize * 20;
    let delta: Vec<u8> = (0..delta_bytes).map(|i| (i % 200) as u8).collect();
    let marks: Vec<twilio::Inbound> = (1..=frames)
        .map(|seq| {
            twilio::Inbound::parse(&format!(
                r#"{{"event":"mark","streamSid":"MZ1","mark":{{"name":"item_1:{seq}"}}}}"#
            ))
            .unwrap()
        })
        .collect();
    let start = twilio::Inbound::parse(
        r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1"}}"#,
    )
    .unwrap();
    let mut json = String::with_capacity(4096);
    let mut sink = 0usize;

    let t0 = Instant::now();
    let answer = match source {
        CallSource::Twilio => Input::Twilio(&start),
        CallSource::Web => Input::WebAnswered,
    };
    session.handle_input(answer, t0);

    let mut drain = |session: &mut CallSession, json: &mut String| {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Caller(CallerOutput::Twilio(message)) => {
                    json.clear();
                    message.write_json(json);
                    sink += json.len();
                }
                Output::Caller(CallerOutput::WebAudio(samples)) => sink += samples.len(),
                Output::Provider(ProviderCommand::Audio(bytes)) => sink += bytes.len(),
                Output::Event(_) => sink += 1,
                _ => {}
            }
        }
    };

    let mut counted = 0;
    for (frame, mark) in marks.iter().enumerate() {
        if frame == WARM_UP_FRAMES {
            ALLOCATIONS.store(0, Ordering::Relaxed);
            COUNTING.with(|c| c.set(true));
        }
        let now = t0 + Duration::from_millis(20 * frame as u64);
        let caller = match source {
            CallSource::Twilio => Input::Twilio(&caller_twilio),
            CallSource::Web => Input::WebAudio(&caller_web),
        };
        session.handle_input(caller, now);
        drain(&mut session, &mut json);
        session.handle_input(
            Input::Provider(ProviderEvent::AudioDelta {
                item_id: "item_1",
                audio: &delta,
            }),
            now,
        );
        drain(&mut session, &mut json);
        if source == CallSource::Twilio {
            session.handle_input(Input::Twilio(mark), now + Duration::from_millis(20));
            drain(&mut session, &mut json);
        }
        if frame == frames - 1 {
            COUNTING.with(|c| c.set(false));
            counted = ALLOCATIONS.load(Ordering::Relaxed);
        }
    }
    assert!(sink > 0);
    assert!(!session.is_ended());
    assert_eq!(
        session.counters().rejected_inputs(),
        0,
        "{:?}",
        session.counters()
    );
    if source == CallSource::Twilio {
        assert_eq!(session.counters().marks_acked as usize, frames);
    }
    counted
}

#[test]
fn steady_state_frames_do_not_allocate() {
    // The counter itself works: one deliberate allocation is seen.
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let probe = std::hint::black_box(Vec::<u8>::with_capacity(64));
    COUNTING.with(|c| c.set(false));
    drop(probe);
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 1);

    let passthrough = allocations_per_steady_state(
        CallSource::Twilio,
        AudioFormat::Mulaw8k,
        AudioFormat::Mulaw8k,
    );
    let twilio_transcode = allocations_per_steady_state(CallSource::Twilio, PCM24, PCM24);
    let web_transcode = allocations_per_steady_state(
        CallSource::Web,
        AudioFormat::Pcm16 {
            sample_rate_hz: 16_000,
        },
        PCM24,
    );
    assert_eq!(
        (passthrough, twilio_transcode, web_transcode),
        (0, 0, 0),
        "allocations in {MEASURED_FRAMES} frames: (pass-through, twilio transcode, web transcode)"
    );
}
