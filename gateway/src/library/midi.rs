//! A Standard MIDI File from KIE's notes, and KIE's notes back from it. KIE answers Suno's
//! MIDI of a separation as note data (`midiData`: `instruments`, each a `name` and `notes`
//! with `pitch` 0–127, `start` and `end` in seconds — a number or a string — and `velocity`
//! 0–1), which is gone from KIE after 14 days. The console keeps it as a file any DAW opens:
//!
//! - format 1, 480 ticks a quarter note at 120 BPM (960 ticks a second, so KIE's times, which
//!   come in 192nds of a second, survive exactly); a tempo track, then one track per
//!   instrument, named by it;
//! - an instrument General MIDI names gets its program; drums play on channel 10; the others
//!   take the remaining channels in turn;
//! - a note KIE could not have meant (a pitch outside 0–127, a time that is not a number, an
//!   end before its start, past [`MAX_SECONDS`]) is left out; an answer with no note left is
//!   refused, as is one past [`MAX_NOTES`].
//!
//! [`notes`] reads such a file back into KIE's shape (for the relay's answers), and refuses
//! anything malformed rather than guessing.

use serde_json::{Value, json};

/// Ticks a quarter note.
const DIVISION: u16 = 480;
/// Microseconds a quarter note (120 BPM).
const TEMPO_US: u32 = 500_000;
/// Ticks a second, at [`DIVISION`] and [`TEMPO_US`].
const TICKS_PER_SECOND: f64 = DIVISION as f64 * 1_000_000.0 / TEMPO_US as f64;
/// Most notes one file holds.
pub const MAX_NOTES: usize = 200_000;
/// The latest a note may end, in seconds (six hours).
pub const MAX_SECONDS: f64 = 6.0 * 3600.0;
/// Most instruments (tracks) one file holds.
const MAX_INSTRUMENTS: usize = 64;
/// The longest track name kept, in bytes.
const MAX_NAME: usize = 100;
/// Most notes sounding at once that a file is read with.
const MAX_SOUNDING: usize = 2 * 16 * 128;
/// The channel General MIDI plays drums on (10, counted from 1).
const DRUMS: u8 = 9;

/// General MIDI's programs, in order: an instrument named so plays as it.
const PROGRAMS: [&str; 128] = [
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano", "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass", "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bag pipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring", "Helicopter", "Applause", "Gunshot",
];

/// One note, in ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Note {
    pitch: u8,
    on: u32,
    off: u32,
    velocity: u8,
}

/// A time KIE writes as a number or a string, in seconds.
fn seconds(v: Option<&Value>) -> Option<f64> {
    let s = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (s.is_finite() && (0.0..=MAX_SECONDS).contains(&s)).then_some(s)
}

/// One of KIE's notes in ticks, if it is one.
fn note(v: &Value) -> Option<Note> {
    let pitch = u8::try_from(v.get("pitch")?.as_u64()?).ok().filter(|p| *p <= 127)?;
    let (start, end) = (seconds(v.get("start"))?, seconds(v.get("end"))?);
    if end < start {
        return None;
    }
    let on = (start * TICKS_PER_SECOND).round() as u32;
    let off = ((end * TICKS_PER_SECOND).round() as u32).max(on + 1);
    // KIE's velocity is 0–1; a value above 1 is taken as MIDI's own 0–127.
    let v = v.get("velocity").and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0).unwrap_or(1.0);
    let velocity = if v <= 1.0 { (v * 127.0).round() } else { v.round().min(127.0) };
    Some(Note { pitch, on, off, velocity: (velocity as u8).max(1) })
}

/// A variable-length quantity.
fn var_len(out: &mut Vec<u8>, mut n: u32) {
    let mut bytes = [0u8; 5];
    let mut i = bytes.len() - 1;
    bytes[i] = (n & 0x7f) as u8;
    n >>= 7;
    while n > 0 {
        i -= 1;
        bytes[i] = (n & 0x7f) as u8 | 0x80;
        n >>= 7;
    }
    out.extend_from_slice(&bytes[i..]);
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(kind);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// `name` cut to at most [`MAX_NAME`] bytes on a character boundary.
fn short(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// One instrument's track: its name, its program, its notes on `channel`.
fn track(name: &str, program: Option<u8>, channel: u8, notes: &[Note]) -> Vec<u8> {
    let mut body = vec![0x00, 0xff, 0x03];
    let name = short(name);
    var_len(&mut body, name.len() as u32);
    body.extend_from_slice(name.as_bytes());
    if let Some(p) = program {
        body.extend_from_slice(&[0x00, 0xc0 | channel, p]);
    }
    // Each note's start and end, ends first where they meet, so a repeated pitch restarts.
    let mut events: Vec<(u32, bool, u8, u8)> = notes.iter().flat_map(|n| [(n.on, true, n.pitch, n.velocity), (n.off, false, n.pitch, 0x40)]).collect();
    events.sort_by_key(|&(tick, on, pitch, _)| (tick, on, pitch));
    let mut at = 0;
    for (tick, on, pitch, velocity) in events {
        var_len(&mut body, tick - at);
        at = tick;
        body.extend_from_slice(&[if on { 0x90 } else { 0x80 } | channel, pitch, velocity]);
    }
    body.extend_from_slice(&[0x00, 0xff, 0x2f, 0x00]);
    body
}

/// The Standard MIDI File of KIE's `midiData` (see the module doc).
pub fn file(midi_data: &Value) -> Result<Vec<u8>, String> {
    let instruments = midi_data.get("instruments").and_then(Value::as_array).ok_or("KIE's answer has no instruments")?;
    if instruments.len() > MAX_INSTRUMENTS {
        return Err(format!("KIE's answer has {} instruments; a file holds at most {MAX_INSTRUMENTS}", instruments.len()));
    }
    let mut tracks = Vec::new();
    let (mut total, mut next_channel) = (0usize, 0u8);
    for (i, instrument) in instruments.iter().enumerate() {
        let name = instrument.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty()).map_or_else(|| format!("Instrument {}", i + 1), str::to_string);
        let notes: Vec<Note> = instrument.get("notes").and_then(Value::as_array).map(|n| n.iter().filter_map(note).collect()).unwrap_or_default();
        total += notes.len();
        if total > MAX_NOTES {
            return Err(format!("KIE's answer has more than {MAX_NOTES} notes"));
        }
        if notes.is_empty() {
            continue;
        }
        let program = PROGRAMS.iter().position(|p| p.eq_ignore_ascii_case(&name)).map(|p| p as u8);
        let channel = if program.is_none() && name.to_ascii_lowercase().contains("drum") {
            DRUMS
        } else {
            let c = next_channel;
            next_channel = (next_channel + 1) % 16;
            if next_channel == DRUMS {
                next_channel += 1;
            }
            c
        };
        tracks.push(track(&name, program, channel, &notes));
    }
    if tracks.is_empty() {
        return Err("KIE's answer has no notes to write".into());
    }
    let mut out = Vec::new();
    let mut header = vec![0, 1];
    header.extend_from_slice(&(tracks.len() as u16 + 1).to_be_bytes());
    header.extend_from_slice(&DIVISION.to_be_bytes());
    chunk(&mut out, b"MThd", &header);
    let tempo = TEMPO_US.to_be_bytes();
    chunk(&mut out, b"MTrk", &[0x00, 0xff, 0x51, 0x03, tempo[1], tempo[2], tempo[3], 0x00, 0xff, 0x2f, 0x00]);
    for t in &tracks {
        chunk(&mut out, b"MTrk", t);
    }
    Ok(out)
}

/// Reads bytes one at a time, refusing to run past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or("the MIDI file ends early")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn var_len(&mut self) -> Result<u32, String> {
        let mut n = 0u32;
        for _ in 0..4 {
            let b = self.byte()?;
            n = (n << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("a MIDI length is longer than four bytes".into())
    }
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// One track read: its name, its notes, and the first tempo it sets.
fn read_track(body: &[u8]) -> Result<(String, Vec<Note>, Option<u32>), String> {
    let mut r = Reader { bytes: body, at: 0 };
    let (mut name, mut notes, mut tempo) = (String::new(), Vec::new(), None);
    let mut sounding: Vec<(u8, u8, u32, u8)> = Vec::new();
    let (mut tick, mut running) = (0u32, 0u8);
    while !r.done() {
        tick = tick.checked_add(r.var_len()?).ok_or("a MIDI track runs past its clock")?;
        let mut status = r.byte()?;
        let first = if status < 0x80 {
            // Running status: the byte read is the first data byte.
            let data = status;
            status = running;
            if status == 0 {
                return Err("a MIDI event has no status".into());
            }
            Some(data)
        } else {
            None
        };
        match status {
            0xff => {
                let kind = r.byte()?;
                let len = r.var_len()? as usize;
                let data = r.take(len)?;
                match kind {
                    0x03 if name.is_empty() => name = String::from_utf8_lossy(data).into_owned(),
                    0x51 if len == 3 && tempo.is_none() => tempo = Some(u32::from_be_bytes([0, data[0], data[1], data[2]])),
                    0x2f => break,
                    _ => {}
                }
            }
            0xf0 | 0xf7 => {
                let len = r.var_len()? as usize;
                r.take(len)?;
            }
            0x80..=0xef => {
                running = status;
                let a = match first {
                    Some(a) => a,
                    None => r.byte()?,
                };
                let kind = status & 0xf0;
                let channel = status & 0x0f;
                if matches!(kind, 0xc0 | 0xd0) {
                    continue;
                }
                let b = r.byte()?;
                match (kind, b) {
                    (0x90, v) if v > 0 => {
                        // Every pitch on every channel twice over, at most: a file that holds
                        // more notes at once is not one this console wrote.
                        if sounding.len() >= MAX_SOUNDING {
                            return Err("the MIDI file holds too many notes at once".into());
                        }
                        sounding.push((channel, a, tick, v));
                    }
                    (0x80, _) | (0x90, _) => {
                        if let Some(i) = sounding.iter().position(|s| s.0 == channel && s.1 == a) {
                            let (_, pitch, on, velocity) = sounding.remove(i);
                            notes.push(Note { pitch, on, off: tick, velocity });
                            if notes.len() > MAX_NOTES {
                                return Err(format!("the MIDI file has more than {MAX_NOTES} notes"));
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => return Err(format!("a MIDI event has status {status:#x}, which a file does not hold")),
        }
    }
    Ok((name, notes, tempo))
}

fn time(ticks: u32, seconds_per_tick: f64) -> f64 {
    (f64::from(ticks) * seconds_per_tick * 1e9).round() / 1e9
}

/// KIE's `midiData` read back from a Standard MIDI File: `{state, instruments}`, the notes by
/// when they start (see the module doc).
pub fn notes(file: &[u8]) -> Result<Value, String> {
    let mut r = Reader { bytes: file, at: 0 };
    if r.take(4)? != b"MThd" {
        return Err("not a MIDI file".into());
    }
    let len = u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| "the MIDI file ends early")?) as usize;
    let header = r.take(len)?;
    if header.len() < 6 {
        return Err("the MIDI header is too short".into());
    }
    let division = u16::from_be_bytes([header[4], header[5]]);
    if division == 0 || division & 0x8000 != 0 {
        return Err("the MIDI file counts time in SMPTE frames, which is not read here".into());
    }
    let mut tracks = Vec::new();
    while !r.done() {
        let kind: [u8; 4] = r.take(4)?.try_into().map_err(|_| "the MIDI file ends early")?;
        let len = u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| "the MIDI file ends early")?) as usize;
        let body = r.take(len)?;
        if &kind == b"MTrk" {
            tracks.push(read_track(body)?);
        }
    }
    let tempo = tracks.iter().find_map(|t| t.2).unwrap_or(TEMPO_US);
    let seconds_per_tick = f64::from(tempo) / 1_000_000.0 / f64::from(division);
    let instruments: Vec<Value> = tracks
        .into_iter()
        .filter(|t| !t.1.is_empty())
        .map(|(name, mut notes, _)| {
            notes.sort_by_key(|n| (n.on, n.pitch));
            let notes: Vec<Value> = notes
                .iter()
                .map(|n| json!({ "pitch": n.pitch, "start": time(n.on, seconds_per_tick), "end": time(n.off, seconds_per_tick), "velocity": (f64::from(n.velocity) / 127.0 * 1e4).round() / 1e4 }))
                .collect();
            json!({ "name": name, "notes": notes })
        })
        .collect();
    Ok(json!({ "state": "complete", "instruments": instruments }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kies() -> Value {
        json!({"state": "complete", "instruments": [
            {"name": "Drums", "notes": [
                {"pitch": 73, "start": "0.036458333333333336", "end": "0.18229166666666666", "velocity": 1},
                {"pitch": 61, "start": 0.046875, "end": "0.19270833333333334", "velocity": 1},
            ]},
            {"name": "Electric Bass (finger)", "notes": [
                {"pitch": 44, "start": 7.6875, "end": "7.911458333333333", "velocity": 0.5},
                {"pitch": 44, "start": 7.911458333333333, "end": 8.0, "velocity": 0.25},
            ]},
        ]})
    }

    #[test]
    fn kies_notes_make_a_standard_midi_file_that_reads_back_the_same() {
        let f = file(&kies()).unwrap();
        assert_eq!(&f[..4], b"MThd");
        assert_eq!(u16::from_be_bytes([f[10], f[11]]), 3, "a tempo track and one a instrument");
        assert_eq!(crate::library::sniff::content_type(&f), "audio/midi");
        let back = notes(&f).unwrap();
        let inst = back["instruments"].as_array().unwrap();
        assert_eq!((inst[0]["name"].as_str(), inst[1]["name"].as_str()), (Some("Drums"), Some("Electric Bass (finger)")));
        let first = &inst[0]["notes"][0];
        assert_eq!((first["pitch"].as_u64(), first["velocity"].as_f64()), (Some(73), Some(1.0)));
        assert!((first["start"].as_f64().unwrap() - 0.036458333).abs() < 1e-6, "KIE's 192nds of a second survive: {first}");
        assert!((first["end"].as_f64().unwrap() - 0.182291667).abs() < 1e-6);
        let bass = inst[1]["notes"].as_array().unwrap();
        assert_eq!(bass.len(), 2, "a pitch played again where it ends is two notes");
        assert!((bass[0]["velocity"].as_f64().unwrap() - 0.5039).abs() < 1e-3);
        assert!((bass[1]["start"].as_f64().unwrap() - 7.911458333).abs() < 1e-6);
        // The bass has its General MIDI program (33); the drums are on channel 10.
        assert!(f.windows(3).any(|w| w == [0x00, 0xc0, 33]), "program change to Electric Bass (finger) on channel 1 (the drums took none of the others)");
        assert!(f.windows(3).any(|w| w == [0x99, 73, 127]), "the drums' first note on channel 10");
    }

    #[test]
    fn notes_kie_could_not_mean_are_left_out_and_an_empty_answer_is_refused() {
        let odd = json!({"instruments": [{"name": "Piano", "notes": [
            {"pitch": 128, "start": 0, "end": 1},
            {"pitch": 60, "start": "soon", "end": 1},
            {"pitch": 60, "start": 2, "end": 1},
            {"pitch": 60, "start": 0, "end": MAX_SECONDS + 1.0},
            {"pitch": 60, "start": 1, "end": 1, "velocity": 0},
        ]}]});
        let back = notes(&file(&odd).unwrap()).unwrap();
        let kept = back["instruments"][0]["notes"].as_array().unwrap();
        assert_eq!(kept.len(), 1, "only the last note is one: {back}");
        assert!(kept[0]["end"].as_f64().unwrap() > kept[0]["start"].as_f64().unwrap(), "a note lasts at least a tick");
        assert!(kept[0]["velocity"].as_f64().unwrap() > 0.0, "a silent note still sounds");
        assert!(file(&json!({"instruments": []})).unwrap_err().contains("no notes"));
        assert!(file(&json!({"state": "complete"})).unwrap_err().contains("no instruments"));
        let many = json!({"instruments": [{"name": "x", "notes": vec![json!({"pitch": 60, "start": 0, "end": 1}); MAX_NOTES + 1]}]});
        assert!(file(&many).unwrap_err().contains("more than"));
    }

    #[test]
    fn a_malformed_file_is_refused_not_guessed() {
        let f = file(&kies()).unwrap();
        for cut in [3, 13, 30, f.len() - 1] {
            assert!(notes(&f[..cut]).is_err(), "cut at {cut}");
        }
        assert!(notes(b"RIFF....WAVE").unwrap_err().contains("not a MIDI file"));
        let mut smpte = f.clone();
        smpte[12] = 0xe7;
        assert!(notes(&smpte).unwrap_err().contains("SMPTE"));
        // Notes started and never ended, more than any file of this console's holds.
        let mut body = Vec::new();
        for i in 0..=MAX_SOUNDING {
            body.extend_from_slice(&[0x00, 0x90 | (i % 16) as u8, (i % 128) as u8, 100]);
        }
        let mut held = Vec::new();
        chunk(&mut held, b"MThd", &[0, 1, 0, 1, 0x01, 0xe0]);
        chunk(&mut held, b"MTrk", &body);
        assert!(notes(&held).unwrap_err().contains("too many notes at once"));
    }

    #[test]
    fn lengths_are_written_as_midi_counts_them() {
        for (n, bytes) in [(0u32, vec![0x00]), (0x7f, vec![0x7f]), (0x80, vec![0x81, 0x00]), (0x3fff, vec![0xff, 0x7f]), (0x0fff_ffff, vec![0xff, 0xff, 0xff, 0x7f])] {
            let mut out = Vec::new();
            var_len(&mut out, n);
            assert_eq!(out, bytes, "{n:#x}");
            assert_eq!(Reader { bytes: &out, at: 0 }.var_len().unwrap(), n);
        }
    }
}
