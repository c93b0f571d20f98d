//! A FAL simulator: the queue, storage, file and JWKS endpoints of FAL served from one local
//! address, with simulated jobs, signed webhooks, fault injection and a log of what it received.
//!
//! Layout on one address: the queue under `/queue` (so `FAL_QUEUE_URL=http://ADDR/queue`), the REST
//! API under `/rest` (`FAL_REST_URL=http://ADDR/rest`, JWKS at `/rest/.well-known/jwks.json`), the
//! stored files and the CDN upload endpoints under `/files` (so the CDN's base URL is
//! `http://ADDR`), FAL's Platform API under `/platform/v1` (`FAL_PLATFORM_URL`; request payloads
//! are deleted there), and the simulator's own controls under `/_sim`.
//!
//! It follows FAL as it is today: inputs are checked when a job runs (a submit only refuses
//! unknown models, bodies that are not JSON, bad webhook URLs and the deprecated pro trainer),
//! failed jobs carry `error`/`error_type`, statuses can be streamed, and uploads work both ways
//! FAL's official clients upload (CDN token + `POST /files/upload`, multipart for large files,
//! and the storage initiate/PUT flow). Jobs download the inputs they name from wherever they
//! are (see `inputs`), as FAL's runners do.

mod cdn;
mod config;
mod files;
mod inputs;
mod job;
mod output;
mod pictures;
mod queue;
mod routes;
mod run;
mod simulator;
mod state;
mod storage;
mod validate;

pub use config::{FaultRates, SimConfig, WebhookBehaviour};
pub use simulator::{run_standalone, FalSimulator};
pub use state::{Fault, JobTiming, RecordedRequest, RequestKind, WebhookDelivery};
