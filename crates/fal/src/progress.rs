//! How far a running training is, read from FAL's status: the latest step count its trainer
//! logged, or, when it logged none we recognise, an estimate from the time it has run.
//!
//! FAL passes on whatever a trainer prints. Seen in the wild: tqdm bars
//! (`Training:  45%|████▌     | 450/1000 [05:12<06:21,  1.44it/s, loss=0.38]`), plain step
//! lines (`Step 40/100, Loss: 0.123`, `Training step 450/1000`, `Iteration 120/300`) and bare
//! percentages (`Training: 45%`). Other bars come before and between the steps — model shards
//! loading, latents caching, sample images — and must not read as training progress.

use std::time::Duration;

use aggregates::presets::TrainerParams;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::types::{LogEntry, QueueState, QueueStatus};

/// The highest percentage an estimate from time alone shows: the clock cannot know the end.
pub const MAX_ESTIMATED_PERCENT: u8 = 95;
/// The highest percentage logs show before FAL says the job completed (saving and uploading
/// the weights still follow the last step).
pub const MAX_RUNNING_PERCENT: u8 = 99;
/// Below this share of the steps done, the observed rate says too little (the first steps
/// carry the trainer's start-up) and the expected time is used instead.
const MIN_SHARE_FOR_RATE: f64 = 0.05;
/// Bars with fewer steps than this are files or shards, not training steps.
const MIN_GENERIC_TOTAL: u64 = 10;

/// Where a running training stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    /// 0–100; never 100 before FAL says the job completed.
    pub percent: u8,
    /// The time left, when there is an estimate.
    pub remaining: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting in FAL's queue.
    Queued,
    /// A runner has it.
    Running,
}

/// `done` of `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub done: u64,
    pub total: u64,
}

impl Fraction {
    fn share(self) -> f64 {
        self.done as f64 / self.total as f64
    }
}

/// How much a line says about training progress; higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    /// A bar without words about training (a bare tqdm bar).
    Generic,
    /// A line that speaks of steps, iterations or training.
    Training,
    /// A count over exactly the steps the trainer was asked for.
    ExpectedTotal,
}

/// Steps (or iterations) the trainer was asked to run.
pub fn expected_steps(params: &TrainerParams) -> u64 {
    match params {
        TrainerParams::Portrait(p) => u64::from(p.steps),
        TrainerParams::StyleLora(p) => u64::from(p.steps),
        TrainerParams::ProFinetune(p) => u64::from(p.iterations),
    }
}

/// How long a training of `params` usually runs once a runner has it. Start-up plus a rate per
/// step, chosen so the presets land inside the 3–15 (portrait) and 5–30 (style) minutes the bot
/// announces when a training starts.
pub fn expected_duration(params: &TrainerParams) -> Duration {
    let (start_up, per_step_ms) = match params {
        TrainerParams::Portrait(_) => (60, 600),
        TrainerParams::StyleLora(_) => (60, 500),
        TrainerParams::ProFinetune(_) => (120, 1200),
    };
    Duration::from_secs(start_up) + Duration::from_millis(per_step_ms * expected_steps(params))
}

/// The latest recognisable step count in `lines` (oldest first). A count over the expected
/// total beats a line about training, which beats a bare bar; among equals the latest wins.
pub fn latest_fraction<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    expected_total: Option<u64>,
) -> Option<Fraction> {
    let mut best: Option<(Strength, Fraction)> = None;
    for line in lines {
        if let Some(found) = parse_line(line, expected_total) {
            if best.is_none_or(|(strength, _)| found.0 >= strength) {
                best = Some(found);
            }
        }
    }
    best.map(|(_, fraction)| fraction)
}

/// The progress in one log message, if it shows any.
fn parse_line(message: &str, expected_total: Option<u64>) -> Option<(Strength, Fraction)> {
    // A tqdm bar redraws itself with carriage returns: the last drawing is the current one.
    let line = message
        .rsplit('\r')
        .find(|part| !part.trim().is_empty())?
        .to_lowercase();
    let fractions = fractions(&line);
    if let Some(total) = expected_total {
        if let Some(f) = fractions.iter().rev().find(|f| f.total == total) {
            return Some((Strength::ExpectedTotal, f.fraction()));
        }
    }
    if NOT_TRAINING.iter().any(|word| line.contains(word)) {
        return None;
    }
    let about_training = TRAINING.iter().any(|word| line.contains(word));
    // "Epoch 2/10, step 40/100": the count right after a step word is the one.
    let fraction = fractions
        .iter()
        .find(|f| f.after_step_word)
        .or(fractions.first())
        .map(Found::fraction);
    match fraction {
        Some(f) if about_training => Some((Strength::Training, f)),
        Some(f) if f.total >= MIN_GENERIC_TOTAL && looks_like_a_bar(&line) => {
            Some((Strength::Generic, f))
        }
        Some(_) => None,
        None if about_training => percent(&line).map(|done| {
            (
                Strength::Training,
                Fraction {
                    done: u64::from(done),
                    total: 100,
                },
            )
        }),
        None => None,
    }
}

/// Words of lines about training steps.
const TRAINING: &[&str] = &["step", "iter", "train", "epoch"];
/// Words of the other bars a trainer draws: start-up, preprocessing, samples, saving.
const NOT_TRAINING: &[&str] = &[
    "load",
    "download",
    "upload",
    "cach",
    "shard",
    "fetch",
    "extract",
    "encod",
    "caption",
    "preprocess",
    "resiz",
    "sampl",
    "generat",
    "validat",
    "saving",
];

/// tqdm's marks: a percentage, a bar, a rate.
fn looks_like_a_bar(line: &str) -> bool {
    line.contains('%') || line.contains('|') || line.contains("it/s") || line.contains("s/it")
}

#[derive(Debug, Clone, Copy)]
struct Found {
    done: u64,
    total: u64,
    /// Right after "step", "steps:", "iteration" and the like.
    after_step_word: bool,
}

impl Found {
    fn fraction(&self) -> Fraction {
        Fraction {
            done: self.done,
            total: self.total,
        }
    }
}

/// Every `done/total` in a line: digits, a slash, digits, with no digit or slash on either
/// side (so dates like 2024/08/01 are none), `done` not above `total`, `total` not zero.
fn fractions(line: &str) -> Vec<Found> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'/' {
            i += 1;
            continue;
        }
        let start = (0..i)
            .rev()
            .take_while(|&j| bytes[j].is_ascii_digit())
            .last();
        let end = (i + 1..bytes.len())
            .take_while(|&j| bytes[j].is_ascii_digit())
            .last();
        if let (Some(start), Some(end)) = (start, end) {
            let clean_before = start == 0 || !matches!(bytes[start - 1], b'/' | b'.');
            let clean_after = end + 1 == bytes.len() || !matches!(bytes[end + 1], b'/' | b'.');
            let done = line[start..i].parse::<u64>().ok();
            let total = line[i + 1..=end].parse::<u64>().ok();
            if let (true, true, Some(done), Some(total)) = (clean_before, clean_after, done, total)
            {
                if total > 0 && done <= total {
                    let before = line[..start].trim_end_matches([' ', ':', '=', '#']);
                    let after_step_word = ["step", "steps", "iteration", "iterations", "iter"]
                        .iter()
                        .any(|word| before.ends_with(word));
                    found.push(Found {
                        done,
                        total,
                        after_step_word,
                    });
                }
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    found
}

/// The first whole percentage in a line (`45%`, `45.5 %`), 0–100.
fn percent(line: &str) -> Option<u8> {
    let bytes = line.as_bytes();
    for (i, _) in line.match_indices('%') {
        let mut j = i;
        while j > 0 && bytes[j - 1] == b' ' {
            j -= 1;
        }
        let number_end = j;
        while j > 0 && (bytes[j - 1].is_ascii_digit() || bytes[j - 1] == b'.') {
            j -= 1;
        }
        if let Ok(value) = line[j..number_end].parse::<f64>() {
            if (0.0..=100.0).contains(&value) {
                return Some(value.floor() as u8);
            }
        }
    }
    None
}

/// The percentage and time left from a step count (if any), the time the training has run and
/// the time it is expected to take.
pub fn estimate(fraction: Option<Fraction>, elapsed: Duration, expected: Duration) -> Progress {
    let from_clock = |percent: u8| Progress {
        stage: Stage::Running,
        percent,
        remaining: expected.checked_sub(elapsed).filter(|left| !left.is_zero()),
    };
    match fraction {
        Some(f) if f.done > 0 => {
            let percent = ((f.done * 100) / f.total).min(u64::from(MAX_RUNNING_PERCENT)) as u8;
            if f.share() >= MIN_SHARE_FOR_RATE {
                let left = elapsed.as_secs_f64() * (f.total - f.done) as f64 / f.done as f64;
                Progress {
                    stage: Stage::Running,
                    percent,
                    remaining: Some(Duration::from_secs_f64(left)),
                }
            } else {
                from_clock(percent)
            }
        }
        Some(_) => from_clock(0),
        None => {
            let share = if expected.is_zero() {
                1.0
            } else {
                elapsed.as_secs_f64() / expected.as_secs_f64()
            };
            let percent = (share * 100.0).clamp(0.0, f64::from(MAX_ESTIMATED_PERCENT)) as u8;
            from_clock(percent)
        }
    }
}

/// When FAL's runner took the job: the first log line's time, if FAL wrote one we can read;
/// never before we started watching (clocks differ) nor after `now`.
pub fn started_at(
    logs: &[LogEntry],
    watched_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let first = logs
        .iter()
        .filter_map(|entry| entry.timestamp.as_deref())
        .filter_map(parse_time)
        .min();
    first
        .map_or(watched_since, |at| at.max(watched_since))
        .min(now)
}

/// FAL writes RFC 3339; a time without an offset is taken as UTC.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// The progress of a training FAL reports as not completed. `params` are what the trainer was
/// asked to do (unknown for a run the avatar no longer records), `watched_since` when we began
/// watching the job.
pub fn of_status(
    status: &QueueStatus,
    params: Option<&TrainerParams>,
    watched_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Progress {
    let expected = params.map_or(Duration::from_secs(10 * 60), expected_duration);
    if status.status == QueueState::InQueue {
        return Progress {
            stage: Stage::Queued,
            percent: 0,
            remaining: None,
        };
    }
    let logs = status.logs.as_deref().unwrap_or_default();
    let fraction = latest_fraction(
        logs.iter().map(|entry| entry.message.as_str()),
        params.map(expected_steps),
    );
    let elapsed = (now - started_at(logs, watched_since, now))
        .to_std()
        .unwrap_or_default();
    estimate(fraction, elapsed, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(lines: &[&str], expected: Option<u64>) -> Option<(u64, u64)> {
        latest_fraction(lines.iter().copied(), expected).map(|f| (f.done, f.total))
    }

    #[test]
    fn tqdm_bars_read_as_their_count() {
        let lines = [
            "Training:  45%|████▌     | 450/1000 [05:12<06:21,  1.44it/s, loss=0.381]",
            "my_first_flux_lora_v1:  12%|█▏        | 120/1000 [01:40<12:13,  1.20it/s, lr: 4.0e-04 loss: 3.812e-01]",
            "steps:  30%|███       | 300/1000 [04:01<09:23,  1.24it/s, avr_loss=0.0912]",
        ];
        assert_eq!(latest(&lines[..1], None), Some((450, 1000)));
        assert_eq!(latest(&lines[1..2], None), Some((120, 1000)));
        assert_eq!(latest(&lines[2..], None), Some((300, 1000)));
    }

    #[test]
    fn step_and_iteration_lines() {
        assert_eq!(latest(&["Training step 150/600"], None), Some((150, 600)));
        assert_eq!(latest(&["Iteration 75/300"], None), Some((75, 300)));
        assert_eq!(
            latest(
                &["[Rank 0] Step 40/100, Loss: 0.123456, Avg: 0.200000"],
                None
            ),
            Some((40, 100))
        );
        // The step count, not the epoch, when a line has both.
        assert_eq!(
            latest(&["Epoch 2/10, step 40/100, loss 0.2"], None),
            Some((40, 100))
        );
        assert_eq!(latest(&["steps: 450/1000"], None), Some((450, 1000)));
    }

    #[test]
    fn bare_percentages_about_training() {
        assert_eq!(latest(&["Training: 45%"], None), Some((45, 100)));
        assert_eq!(latest(&["Training progress 62.5 %"], None), Some((62, 100)));
        assert_eq!(latest(&["Progress: 45%"], None), None);
    }

    #[test]
    fn the_latest_line_wins() {
        let lines = [
            "Starting",
            "Training step 75/300",
            "Training step 150/300",
            "Training step 225/300",
        ];
        assert_eq!(latest(&lines, None), Some((225, 300)));
    }

    #[test]
    fn a_redrawn_bar_is_read_at_its_last_drawing() {
        let line = "Training:  10%|█         | 100/1000\rTraining:  20%|██        | 200/1000\r";
        assert_eq!(latest(&[line], None), Some((200, 1000)));
    }

    #[test]
    fn other_bars_are_not_training() {
        let lines = [
            "Loading checkpoint shards: 100%|██████████| 2/2 [00:03<00:00,  1.52s/it]",
            "Caching latents: 100%|██████████| 20/20 [00:12<00:00,  1.61it/s]",
            "Downloading weights 3/3",
            "Generating samples: 50%|█████     | 2/4",
            "2024/08/01 12:00:00 job accepted",
            "100%|██████████| 4/4 [00:01<00:00]",
            "version 1.2/3.4",
        ];
        assert_eq!(latest(&lines, None), None);
    }

    #[test]
    fn a_count_over_the_expected_steps_beats_everything() {
        let lines = [
            "Training step 40/100",
            "Saving checkpoint 500/1000",
            "Epoch 9/10 done",
        ];
        assert_eq!(latest(&lines, Some(1000)), Some((500, 1000)));
        assert_eq!(latest(&lines, None), Some((9, 10)));
    }

    #[test]
    fn a_bare_bar_counts_when_nothing_says_more() {
        assert_eq!(
            latest(
                &[" 37%|███▋      | 370/1000 [03:10<05:24,  1.94it/s]"],
                None
            ),
            Some((370, 1000))
        );
        // …but not over a line about training.
        assert_eq!(
            latest(
                &[
                    "Training step 300/1000",
                    " 90%|█████████ | 90/100 [00:10<00:01]"
                ],
                None
            ),
            Some((300, 1000))
        );
    }

    #[test]
    fn the_rate_estimates_the_time_left() {
        let p = estimate(
            Some(Fraction {
                done: 250,
                total: 1000,
            }),
            Duration::from_secs(120),
            Duration::from_secs(600),
        );
        assert_eq!(p.percent, 25);
        assert_eq!(p.remaining, Some(Duration::from_secs(360)));
    }

    #[test]
    fn the_first_steps_use_the_expected_time() {
        let p = estimate(
            Some(Fraction {
                done: 10,
                total: 1000,
            }),
            Duration::from_secs(100),
            Duration::from_secs(600),
        );
        assert_eq!(p.percent, 1);
        assert_eq!(p.remaining, Some(Duration::from_secs(500)));
    }

    #[test]
    fn the_last_step_is_not_done() {
        let p = estimate(
            Some(Fraction {
                done: 1000,
                total: 1000,
            }),
            Duration::from_secs(600),
            Duration::from_secs(600),
        );
        assert_eq!(p.percent, MAX_RUNNING_PERCENT);
        assert_eq!(p.remaining, Some(Duration::ZERO));
    }

    #[test]
    fn without_logs_the_clock_estimates_and_stops_short() {
        let half = estimate(None, Duration::from_secs(300), Duration::from_secs(600));
        assert_eq!(half.percent, 50);
        assert_eq!(half.remaining, Some(Duration::from_secs(300)));
        let late = estimate(None, Duration::from_secs(900), Duration::from_secs(600));
        assert_eq!(late.percent, MAX_ESTIMATED_PERCENT);
        assert_eq!(late.remaining, None);
    }

    #[test]
    fn expected_durations_fit_what_the_bot_announces() {
        use aggregates::{AvatarType, StyleTrainer, TrainingPreset};
        for preset in TrainingPreset::ALL {
            for (avatar_type, style, (from, to)) in [
                (AvatarType::Portrait, StyleTrainer::Lora, (3, 15)),
                (AvatarType::Style, StyleTrainer::Lora, (5, 30)),
                (AvatarType::Style, StyleTrainer::ProFinetune, (5, 30)),
            ] {
                let params = TrainerParams::for_preset(avatar_type, style, preset, "tok", "x");
                let minutes = expected_duration(&params).as_secs() / 60;
                assert!(
                    (from..=to).contains(&minutes),
                    "{preset:?} {avatar_type:?} {style:?}: {minutes} min"
                );
            }
        }
    }

    #[test]
    fn the_start_is_the_first_log_line_but_never_before_the_watch() {
        let watched = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let now = watched + chrono::Duration::minutes(10);
        let entry = |ts: &str| LogEntry {
            message: "x".into(),
            level: None,
            source: None,
            timestamp: Some(ts.into()),
        };
        let logs = [
            entry("2026-01-01T12:02:00.000000+00:00"),
            entry("2026-01-01T12:03:00"),
        ];
        assert_eq!(
            started_at(&logs, watched, now),
            watched + chrono::Duration::minutes(2)
        );
        let early = [entry("2026-01-01T11:00:00Z")];
        assert_eq!(started_at(&early, watched, now), watched);
        assert_eq!(started_at(&[], watched, now), watched);
        let garbled = [entry("yesterday")];
        assert_eq!(started_at(&garbled, watched, now), watched);
    }

    #[test]
    fn a_queued_job_is_at_zero() {
        let status: QueueStatus =
            serde_json::from_value(serde_json::json!({"status": "IN_QUEUE", "queue_position": 3}))
                .unwrap();
        let now = Utc::now();
        let p = of_status(&status, None, now, now);
        assert_eq!(p.stage, Stage::Queued);
        assert_eq!(p.percent, 0);
    }

    #[test]
    fn a_running_job_reads_its_logs() {
        let status: QueueStatus = serde_json::from_value(serde_json::json!({
            "status": "IN_PROGRESS",
            "logs": [
                {"message": "Starting", "timestamp": "2026-01-01T12:00:00.000000+00:00"},
                {"message": "Training step 150/600", "timestamp": "2026-01-01T12:01:00.000000+00:00"},
            ],
        }))
        .unwrap();
        let watched = DateTime::parse_from_rfc3339("2026-01-01T11:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let now = watched + chrono::Duration::minutes(2);
        let params = TrainerParams::for_preset(
            aggregates::AvatarType::Portrait,
            aggregates::StyleTrainer::Lora,
            aggregates::TrainingPreset::Balanced,
            "tok",
            "x",
        );
        let p = of_status(&status, Some(&params), watched, now);
        assert_eq!(p.stage, Stage::Running);
        assert_eq!(p.percent, 25);
        // A minute in, a quarter done: three more minutes.
        assert_eq!(p.remaining, Some(Duration::from_secs(180)));
    }
}
