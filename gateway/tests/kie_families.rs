//! Each model-specific family's adapter against kie-sim over real HTTP on loopback: create,
//! follow to success (with result files that download), a failed generation, the family's
//! 422s, every error body code, and its callbacks (Suno's three). kie-sim writes each family's
//! JSON from KIE's docs and shares no types with the adapters.

use axum::body::Bytes;
use axum::http::StatusCode;
use gateway::kie::{ClientOptions, Family, KieClient, KieError, UpstreamState, UpstreamStatus};
use gateway::Secret;
use kie_sim::{Schedule, Settings, Sim};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "sim-family-key";

async fn start() -> (Sim, String) {
    let sim = Sim::new(Settings { schedule: Schedule { waiting_ms: 30, queuing_ms: 30, generating_ms: 60 }, ..Default::default() });
    sim.add_account(KEY, 10_000.0, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    (sim, base)
}

fn client(base: &str) -> KieClient {
    let opts = ClientOptions { timeout: Duration::from_secs(5), backoff: Duration::from_millis(20), ..Default::default() };
    KieClient::new(base.parse().unwrap(), Secret::new(KEY), opts).unwrap()
}

/// Each family with a model name and a request its API takes.
fn cases() -> Vec<(Family, &'static str, Value, usize)> {
    vec![
        (Family::Veo, "veo3", json!({"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9", "generationType": "TEXT_2_VIDEO"}), 1),
        (Family::Suno, "V4", json!({"prompt": "a calm ambient bed", "customMode": false, "instrumental": true}), 2),
        (Family::Runway, "", json!({"prompt": "b-roll of a harbour", "duration": 5, "quality": "1080p"}), 1),
        (Family::Gpt4oImage, "", json!({"prompt": "a poster", "size": "1:1", "nVariants": 2}), 2),
        (Family::FluxKontext, "flux-kontext-pro", json!({"prompt": "make it night", "aspectRatio": "16:9"}), 1),
        (Family::Midjourney, "mj_txt2img", json!({"prompt": "a lighthouse, cinematic", "aspectRatio": "16:9", "version": "7", "speed": "fast"}), 4),
        (Family::Aleph, "", json!({"prompt": "relight it as a winter night", "videoUrl": "https://example.com/harbour.mp4"}), 1),
        (Family::Luma, "", json!({"prompt": "the harbour at night, neon", "videoUrl": "https://example.com/harbour.mp4"}), 1),
    ]
}

async fn wait_for(c: &KieClient, family: Family, id: &str, want: UpstreamState) -> UpstreamStatus {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let st = c.status(family.adapter(), id).await.unwrap_or_else(|e| panic!("{family:?} {id}: {e}"));
        seen.push(st.state);
        if st.state == want {
            return st;
        }
        assert!(!st.state.is_terminal(), "{family:?}: ended {:?}, wanted {want:?}", st.state);
        // Suno and 4o allow 3 status calls per second per task.
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    panic!("{family:?} {id} never reached {want:?}: {seen:?}");
}

#[tokio::test]
async fn every_family_creates_runs_to_success_and_its_results_download() {
    let (sim, base) = start().await;
    let c = client(&base);
    for (family, model, input, results) in cases() {
        let api = family.adapter();
        let id = c.create_task(api, model, &input, Some("http://127.0.0.1:9/cb")).await.unwrap_or_else(|e| panic!("{family:?}: {e}"));
        // The request went to the family's own path, with its own fields.
        let param = sim.world().tasks[&id].param.clone();
        let sent: Value = serde_json::from_str(&param).unwrap();
        assert_eq!(sent["callBackUrl"], "http://127.0.0.1:9/cb", "{family:?}");
        assert_eq!(sent["prompt"], input["prompt"], "{family:?}: fields are sent flat");
        assert_eq!(sent.get(api.model_field()).is_some(), family.takes_model(), "{family:?}: {sent}");
        if family == Family::Midjourney {
            assert_eq!((sent["taskType"].as_str(), sent.get("model")), (Some(model), None), "Midjourney names its kind as taskType");
        }
        if family == Family::Veo {
            assert_eq!(sent["aspectRatio"], "16:9", "the documented English spelling is sent");
            assert!(sent.get("aspect_ratio").is_none());
        }
        let st = wait_for(&c, family, &id, UpstreamState::Success).await;
        assert_eq!(st.task_id, id);
        assert_eq!(st.result_urls.len(), results, "{family:?}: {:?}", st.result_urls);
        assert_eq!(st.callback_url.as_deref(), if family == Family::Runway { None } else { Some("http://127.0.0.1:9/cb") }, "{family:?}: the echoed request proves whose task it is");
        for url in &st.result_urls {
            let r = reqwest::get(url).await.unwrap();
            assert_eq!(r.status(), 200, "{family:?}: {url}");
            assert!(!r.bytes().await.unwrap().is_empty());
        }
    }
}

#[tokio::test]
async fn a_failed_generation_reads_as_a_failure_with_the_familys_code() {
    let (_sim, base) = start().await;
    let c = client(&base);
    for (family, model, mut input, _) in cases() {
        input["prompt"] = json!("sim:fail a storm");
        if family == Family::Suno {
            input["instrumental"] = json!(false);
        }
        let id = c.create_task(family.adapter(), model, &input, None).await.unwrap();
        let st = wait_for(&c, family, &id, UpstreamState::Fail).await;
        assert!(st.result_urls.is_empty(), "{family:?}");
        assert!(st.fail_code.is_some() && st.fail_msg.is_some(), "{family:?}: {st:?}");
        input["prompt"] = json!("sim:policy a storm");
        let id = c.create_task(family.adapter(), model, &input, None).await.unwrap();
        let st = wait_for(&c, family, &id, UpstreamState::Fail).await;
        assert!(st.fail_msg.is_some(), "{family:?}: {st:?}");
        if matches!(family, Family::Veo | Family::Runway | Family::FluxKontext | Family::Gpt4oImage | Family::Midjourney | Family::Aleph | Family::Luma) {
            assert_eq!(st.fail_code.as_deref(), Some("400"), "{family:?}: errorCode carried through");
        }
    }
}

#[tokio::test]
async fn what_a_family_refuses_comes_back_classified() {
    let (sim, base) = start().await;
    let c = client(&base);
    let refused = [
        (Family::Veo, "veo3", json!({"aspectRatio": "16:9"})),
        (Family::Veo, "veo4", json!({"prompt": "x"})),
        (Family::Suno, "V4", json!({"prompt": "x"})),
        (Family::Suno, "V4", json!({"customMode": true, "instrumental": true})),
        (Family::Runway, "", json!({"prompt": "x", "duration": 10, "quality": "1080p"})),
        (Family::Gpt4oImage, "", json!({"prompt": "x"})),
        (Family::Gpt4oImage, "", json!({"size": "1:1", "prompt": "  "})),
        (Family::Gpt4oImage, "", json!({"size": "1:1", "prompt": "x", "nVariants": "2"})),
        (Family::FluxKontext, "flux-kontext-ultra", json!({"prompt": "x"})),
        (Family::Midjourney, "mj_txt2img", json!({"prompt": "x", "speed": "warp"})),
        (Family::Midjourney, "mj_txt2img", json!({"prompt": "x", "version": "8"})),
        (Family::Aleph, "", json!({"prompt": "x", "videoUrl": "https://example.com/a.mp4", "aspectRatio": "5:4"})),
    ];
    for (family, model, input) in refused {
        let err = c.create_task(family.adapter(), model, &input, None).await.expect_err(&format!("{family:?} {input}"));
        assert!(matches!(err, KieError::Validation(_)), "{family:?} {input}: {err:?}");
        // And the adapter refuses it before anything is sent, where its rules know why.
        if family != Family::Veo && family != Family::FluxKontext {
            assert!(family.adapter().check_input("", input.as_object().unwrap()).is_err(), "{family:?} {input}: the adapter agrees");
        }
    }
    // The shared body codes, for every family's create and status.
    for (family, model, input, _) in cases() {
        let api = family.adapter();
        for (code, check) in [(500, KieError::is_transient as fn(&KieError) -> bool), (455, KieError::is_transient), (433, |e: &KieError| !e.is_transient())] {
            sim.world().faults.create_error_code = Some(code);
            sim.world().faults.create_error_count = 1;
            let err = c.create_task(api, model, &input, None).await.expect_err("injected");
            assert!(check(&err), "{family:?} {code}: {err:?}");
            assert_eq!(err.code(), Some(code), "{family:?}");
        }
        sim.world().accounts.get_mut(KEY).unwrap().balance_milli = 1;
        assert!(matches!(c.create_task(api, model, &input, None).await, Err(KieError::InsufficientCredits(_))), "{family:?}");
        sim.world().accounts.get_mut(KEY).unwrap().balance_milli = 10_000_000;
        // Within KIE's 10 status calls a second, counted across the families.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(matches!(c.status(api, "").await, Err(KieError::BadRequest(_))), "{family:?}");
        assert!(matches!(c.status(api, "task_unknown").await, Err(KieError::NotFound(_))), "{family:?}");
        let wrong = KieClient::new(base.parse().unwrap(), Secret::new("wrong"), ClientOptions::default()).unwrap();
        assert!(matches!(wrong.create_task(api, model, &input, None).await, Err(KieError::Auth(_))), "{family:?}");
    }
    // A Market id sent to a family's path is not a model there.
    assert!(matches!(c.create_task(Family::Veo.adapter(), "google/imagen4", &json!({"prompt": "x"}), None).await, Err(KieError::Validation(_))));
}

#[tokio::test]
async fn every_family_is_held_to_one_account_window_and_suno_status_to_three_a_second_per_task() {
    let (sim, base) = start().await;
    let c = client(&base);
    let mut created = 0;
    let mut limited = 0;
    for n in 0..25 {
        let (family, model, input, _) = cases()[n % 5].clone();
        match c.create_task(family.adapter(), model, &input, None).await {
            Ok(_) => created += 1,
            Err(KieError::RateLimited(_)) => limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((created, limited), (20, 5), "20 new requests per 10 s per account, whatever the family");
    let suno = sim.world().tasks.values().find(|t| t.family == "suno").map(|t| t.id.clone()).unwrap();
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(c.status(Family::Suno.adapter(), &suno).await.is_ok());
    }
    assert_eq!(answers, [true, true, true, false, false], "Suno's record-info: 3 per second per task");
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Value>>>);

async fn receiver() -> (String, Received) {
    let got = Received::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |body: Bytes| {
            let g = g.clone();
            async move {
                g.0.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn each_familys_callbacks_parse_to_the_state_they_announce() {
    let (_sim, base) = start().await;
    let c = client(&base);
    for (family, model, input, results) in cases() {
        let (url, got) = receiver().await;
        let api = family.adapter();
        let id = c.create_task(api, model, &input, Some(&url)).await.unwrap();
        let want = if family == Family::Suno { 3 } else { 1 };
        for _ in 0..100 {
            if got.0.lock().unwrap().len() >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let bodies = got.0.lock().unwrap().clone();
        assert_eq!(bodies.len(), want, "{family:?}: {bodies:?}");
        let states: Vec<UpstreamState> = bodies.iter().map(|b| api.parse_callback(b.to_string().as_bytes()).unwrap_or_else(|e| panic!("{family:?}: {e}: {b}")).state).collect();
        let last = api.parse_callback(bodies[want - 1].to_string().as_bytes()).unwrap();
        assert_eq!(last.task_id, id, "{family:?}");
        assert_eq!(last.state, UpstreamState::Success, "{family:?}");
        assert_eq!(last.result_urls.len(), results, "{family:?}");
        if family == Family::Suno {
            assert_eq!(states, [UpstreamState::Generating, UpstreamState::Generating, UpstreamState::Success], "text, first, complete");
            assert!(bodies[0]["data"].get("task_id").is_some(), "Suno calls back in snake_case");
        }
    }
    // A body that is not the family's is refused, not misread.
    for family in Family::ALL {
        assert!(family.adapter().parse_callback(b"{\"code\":200,\"data\":{}}").is_err(), "{family:?}");
        assert!(family.adapter().parse_callback(b"not json").is_err(), "{family:?}");
    }
}

/// Suno's extend: at its own path, naming one track by KIE's id of it (which record-info and
/// the callbacks give beside each track's audio) with the track's model, followed at Suno's
/// record-info; refused by KIE for another model or a track it does not know.
#[tokio::test]
async fn a_suno_track_is_extended_by_kies_id_of_it() {
    let (sim, base) = start().await;
    let c = client(&base);
    let suno = Family::Suno.adapter();
    let song = c.create_task(suno, "V4_5", &json!({"prompt": "a sea shanty", "customMode": false, "instrumental": false}), None).await.unwrap();
    let st = wait_for(&c, Family::Suno, &song, UpstreamState::Success).await;
    assert_eq!(st.result_ids, [kie_sim::families::track_id(&song, 0), kie_sim::families::track_id(&song, 1)], "KIE's track ids, beside their audio");
    assert_eq!(suno.create_path_of("suno_extend"), "/api/v1/generate/extend");
    let input = json!({"audioId": st.result_ids[1], "defaultParamFlag": false, "model": "V4_5"});
    let id = c.create_task(suno, "suno_extend", &input, None).await.unwrap();
    let sent: Value = serde_json::from_str(&sim.world().tasks.get(&id).map(|t| t.param.clone()).unwrap()).unwrap();
    assert_eq!(sent, input, "its fields flat, the track's model among them");
    let done = wait_for(&c, Family::Suno, &id, UpstreamState::Success).await;
    assert_eq!(done.result_urls.len(), 2);
    for bad in [json!({"audioId": st.result_ids[1], "defaultParamFlag": false, "model": "V4"}), json!({"audioId": format!("{song}-1"), "defaultParamFlag": false, "model": "V4_5"})] {
        let e = c.create_task(suno, "suno_extend", &bad, None).await.unwrap_err();
        assert!(matches!(e, KieError::Validation(_)), "{bad}: {e:?}");
    }
    // Its WAV, its vocals apart and its music video: families of their own, each with its status call and its
    // files by name, named by the song's id and the track's.
    for (family, upstream, input, files) in [
        (Family::SunoWav, "suno_wav", json!({"taskId": song, "audioId": st.result_ids[0]}), 1),
        (Family::SunoStems, "suno_stems", json!({"taskId": song, "audioId": st.result_ids[1], "type": "separate_vocal"}), 2),
        (Family::SunoVideo, "suno_video", json!({"taskId": song, "audioId": st.result_ids[0], "author": "The Harbour Band"}), 1),
    ] {
        let api = family.adapter();
        let id = c.create_task(api, upstream, &input, Some("http://127.0.0.1:9/cb")).await.unwrap_or_else(|e| panic!("{upstream}: {e}"));
        let sent: Value = serde_json::from_str(&sim.world().tasks.get(&id).map(|t| t.param.clone()).unwrap()).unwrap();
        assert_eq!(sent["audioId"], input["audioId"], "{upstream}: {sent}");
        assert!(sent.get("model").is_none(), "{upstream}: no model: {sent}");
        let done = wait_for(&c, family, &id, UpstreamState::Success).await;
        assert_eq!(done.result_urls.len(), files, "{upstream}");
        for url in &done.result_urls {
            let got = reqwest::get(url).await.unwrap();
            assert_eq!(got.status().as_u16(), 200, "{upstream}: {url}");
        }
        // Another family's status call does not know it; the song's own family does not either.
        assert!(c.status(Family::Suno.adapter(), &id).await.is_err(), "{upstream}");
        let wrong = json!({"taskId": id, "audioId": st.result_ids[0]});
        assert!(matches!(c.create_task(api, upstream, &wrong, None).await.unwrap_err(), KieError::Validation(_)), "{upstream}: a taskId that is not the track's");
    }
}

/// Suno's MIDI of a separation: at its own path, naming the separation's KIE id, followed at
/// its own record-info; made, it names a written result (KIE answers notes, not a file), whose
/// file is written from KIE's answer and reads back as KIE's notes; its callback names
/// `task_id` beside the notes; refused by KIE for a task that is not a separation.
#[tokio::test]
async fn a_separations_midi_is_notes_the_console_writes_into_a_midi_file() {
    let (sim, base) = start().await;
    let c = client(&base);
    let song = c.create_task(Family::Suno.adapter(), "V4_5", &json!({"prompt": "a sea shanty", "customMode": false, "instrumental": false}), None).await.unwrap();
    let st = wait_for(&c, Family::Suno, &song, UpstreamState::Success).await;
    let stems = c.create_task(Family::SunoStems.adapter(), "suno_stems", &json!({"taskId": song, "audioId": st.result_ids[0], "type": "split_stem"}), None).await.unwrap();
    wait_for(&c, Family::SunoStems, &stems, UpstreamState::Success).await;
    let midi = Family::SunoMidi.adapter();
    let e = c.create_task(midi, "suno_midi", &json!({"taskId": song}), None).await.unwrap_err();
    assert!(matches!(e, KieError::Validation(_)), "a song is no separation: {e:?}");
    let (url, got) = receiver().await;
    let id = c.create_task(midi, "suno_midi", &json!({"taskId": stems}), Some(&url)).await.unwrap();
    let sent: Value = serde_json::from_str(&sim.world().tasks.get(&id).map(|t| t.param.clone()).unwrap()).unwrap();
    assert_eq!(sent, json!({"taskId": stems, "callBackUrl": url}), "its fields flat, no model");
    let done = wait_for(&c, Family::SunoMidi, &id, UpstreamState::Success).await;
    assert_eq!(done.result_urls, [gateway::kie::written_source(&id)], "a written result, named by KIE's task");
    assert_eq!(done.callback_url.as_deref(), Some(url.as_str()));
    // The file, from KIE's answer: KIE's notes when read back.
    let answer = c.status_answer(midi, &id, &Value::Null).await.unwrap();
    let file = midi.result_file(&answer).unwrap();
    assert_eq!(&file[..4], b"MThd");
    let back = midi.result_content(&file).unwrap();
    let kies = &answer["midiData"]["instruments"];
    assert_eq!(back["instruments"].as_array().unwrap().len(), kies.as_array().unwrap().len());
    for (ours, theirs) in back["instruments"].as_array().unwrap().iter().zip(kies.as_array().unwrap()) {
        assert_eq!(ours["name"], theirs["name"]);
        let pitches = |v: &Value| v["notes"].as_array().unwrap().iter().map(|n| n["pitch"].as_u64().unwrap()).collect::<Vec<_>>();
        assert_eq!(pitches(ours), pitches(theirs), "{ours} vs {theirs}");
    }
    for _ in 0..100 {
        if !got.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let cb = got.0.lock().unwrap().first().cloned().expect("KIE called back");
    assert_eq!(cb["task_id"], id.as_str(), "task_id beside data: {cb}");
    let hint = midi.parse_callback(cb.to_string().as_bytes()).unwrap();
    assert_eq!((hint.task_id.as_str(), hint.state), (id.as_str(), UpstreamState::Success));

    // A dense score: 80,000 notes are ~5 MB of KIE's JSON, past the 4 MiB read for any other
    // answer, and are read and written whole.
    sim.world().faults.midi_notes = Some(80_000);
    let answer = c.status_answer(midi, &id, &Value::Null).await.unwrap();
    assert!(answer.to_string().len() > 4 << 20, "the answer is over the usual read");
    let notes = |v: &Value| v["instruments"].as_array().unwrap().iter().map(|i| i["notes"].as_array().unwrap().len()).sum::<usize>();
    assert_eq!(notes(&midi.result_content(&midi.result_file(&answer).unwrap()).unwrap()), 80_000);
    assert_eq!(c.status(midi, &id).await.unwrap().state, UpstreamState::Success, "its status is read whole too");
    // Past what is read for a written result, the answer is refused as too large (asking again
    // would be answered the same), not as unreadable.
    let small = KieClient::new(base.parse().unwrap(), Secret::new(KEY), ClientOptions { max_written: 1 << 20, ..Default::default() }).unwrap();
    let e = small.status_answer(midi, &id, &Value::Null).await.unwrap_err();
    assert!(matches!(e, KieError::TooLarge(n) if n == 1 << 20), "{e:?}");
    assert!(e.to_string().contains("over 1 MiB"), "{e}");
}

/// Midjourney's follow-ups: each at its own path, naming the parent's KIE task id and a
/// result as KIE counts them (upscale from 0, vary from 1), with no `taskType` in the body;
/// followed at record-info like any Midjourney task; refused by KIE when the parent or the
/// index is wrong.
#[tokio::test]
async fn midjourney_follow_ups_act_on_a_result_of_the_grid_at_their_own_paths() {
    let (sim, base) = start().await;
    let c = client(&base);
    let mj = Family::Midjourney.adapter();
    let grid = c.create_task(mj, "mj_txt2img", &json!({"prompt": "a lighthouse"}), None).await.unwrap();
    // Before the grid is done, KIE refuses to act on it.
    let early = c.create_task(mj, "mj_upscale", &json!({"taskId": grid, "imageIndex": 1}), None).await.unwrap_err();
    assert!(matches!(early, KieError::Validation(_)), "{early:?}");
    wait_for(&c, Family::Midjourney, &grid, UpstreamState::Success).await;
    for (model, path, input, results) in [
        ("mj_upscale", "/api/v1/mj/generateUpscale", json!({"taskId": grid, "imageIndex": 1}), 1),
        ("mj_vary", "/api/v1/mj/generateVary", json!({"taskId": grid, "imageIndex": 2}), 4),
    ] {
        assert_eq!(mj.create_path_of(model), path);
        let id = c.create_task(mj, model, &input, Some("http://127.0.0.1:9/cb")).await.unwrap_or_else(|e| panic!("{model}: {e}"));
        let (param, taken_as) = sim.world().tasks.get(&id).map(|t| (t.param.clone(), t.model.clone())).unwrap();
        let sent: Value = serde_json::from_str(&param).unwrap();
        assert_eq!(sent, json!({"taskId": grid, "imageIndex": input["imageIndex"], "callBackUrl": "http://127.0.0.1:9/cb"}), "{model}: its fields flat, no taskType");
        assert_eq!(taken_as, model, "kie-sim took it at {path}");
        let st = wait_for(&c, Family::Midjourney, &id, UpstreamState::Success).await;
        assert_eq!(st.result_urls.len(), results, "{model}");
    }
    // An index past the grid, or one counted the other way, is KIE's 422.
    for (model, index) in [("mj_upscale", 4), ("mj_vary", 0)] {
        let e = c.create_task(mj, model, &json!({"taskId": grid, "imageIndex": index}), None).await.unwrap_err();
        assert!(matches!(e, KieError::Validation(_)), "{model} {index}: {e:?}");
    }
    // A video extend acts on a video, not on a grid.
    let e = c.create_task(mj, "mj_video_extend", &json!({"taskId": grid, "index": 0}), None).await.unwrap_err();
    assert!(matches!(e, KieError::Validation(_)), "{e:?}");
}

/// Veo's upgrades of a video: 1080p answered at once by a GET, 4K started by a POST that
/// answers the parent's id, asked again (422 "processing") until KIE has the file, and its
/// callback naming the parent with what it charged. Each is known by its parent's id and
/// followed by asking again with the index.
#[tokio::test]
async fn veo_upgrades_are_asked_for_again_by_the_parents_id_until_the_file_is_there() {
    let (sim, base) = start().await;
    let c = client(&base);
    let veo = c.create_task(Family::Veo.adapter(), "veo3_fast", &json!({"prompt": "a harbour at dawn"}), None).await.unwrap();
    // KIE will not upgrade a video it has not made.
    let hd = Family::Veo1080p.adapter();
    let early = c.create_task(hd, "veo_1080p", &json!({"taskId": veo, "index": 0}), None).await.unwrap_err();
    assert!(matches!(early, KieError::Validation(_)), "{early:?}");
    wait_for(&c, Family::Veo, &veo, UpstreamState::Success).await;

    let id = c.create_task(hd, "veo_1080p", &json!({"taskId": veo, "index": 0}), Some("http://127.0.0.1:9/cb")).await.unwrap();
    assert_eq!(id, veo, "known by its parent's id");
    let st = c.status_of(hd, &id, &json!({"taskId": veo, "index": 0})).await.unwrap();
    assert_eq!((st.state, st.task_id.as_str()), (UpstreamState::Success, veo.as_str()));
    assert!(st.result_urls[0].contains("_1080p_0/"), "{:?}", st.result_urls);
    let file = reqwest::get(&st.result_urls[0]).await.unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "video/mp4");
    let balance_before_4k = sim.world().accounts[KEY].balance_milli;

    let (url, got) = receiver().await;
    let uhd = Family::Veo4k.adapter();
    let input = json!({"taskId": veo, "index": 0});
    assert_eq!(c.create_task(uhd, "veo_4k", &input, Some(&url)).await.unwrap(), veo);
    let sent: Value = serde_json::from_str(&sim.world().tasks[&format!("{veo}_4k_0")].param).unwrap();
    assert_eq!(sent, json!({"taskId": veo, "index": 0, "callBackUrl": url}));
    // Asked again while it is made: KIE's 422 is no failure, just not yet.
    let making = c.status_of(uhd, &veo, &input).await;
    assert!(matches!(making, Err(KieError::Validation(ref m)) if m.contains("processing")), "{making:?}");
    let made = loop {
        match c.status_of(uhd, &veo, &input).await {
            Ok(st) => break st,
            Err(KieError::Validation(_)) => tokio::time::sleep(Duration::from_millis(40)).await,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!((made.state, made.result_urls.len()), (UpstreamState::Success, 1));
    assert_eq!(sim.world().accounts[KEY].balance_milli, balance_before_4k - 120_000, "4K costs two fast videos");
    for _ in 0..100 {
        if !got.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let body = got.0.lock().unwrap()[0].clone();
    let cb = uhd.parse_callback(body.to_string().as_bytes()).unwrap();
    assert_eq!((cb.task_id.as_str(), cb.state, cb.result_urls.len()), (veo.as_str(), UpstreamState::Success, 1), "{body}");
    assert_eq!(cb.credits.map(|c| c.as_f64()), Some(120.0), "the callback says what it charged");

    // A video the task did not make, or a task that is not Veo's, is refused by KIE.
    let e = c.create_task(uhd, "veo_4k", &json!({"taskId": veo, "index": 3}), None).await.unwrap_err();
    assert!(matches!(e, KieError::Validation(_)), "{e:?}");
    let e = c.create_task(hd, "veo_1080p", &json!({"taskId": "task_unknown", "index": 0}), None).await.unwrap_err();
    assert!(matches!(e, KieError::NotFound(_)), "{e:?}");
    // Asked about a 4K whose parent KIE no longer has, the refusal ends it.
    let gone = c.status_of(uhd, "task_unknown", &input).await.unwrap();
    assert_eq!((gone.state, gone.fail_code.as_deref()), (UpstreamState::Fail, Some("404")));
}
