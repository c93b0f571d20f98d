"""Drives Aisha's FAL simulator with FAL's official Python client (`fal-client`, pinned in
requirements.txt): submit, status with logs, result, cancel and upload, for every endpoint Aisha
uses. If the official client cannot talk to the simulator, the simulator is not FAL. (FAL's
clients have no call for the Platform API's *Delete request payloads*; the simulator's version of
it is checked by the Rust tests in `tests/e2e/fal_forgets.rs`.)

The simulators are started by `.ci/run` (this file starts nothing):
- FAL_SIM_URL: `aisha fal-sim` as shipped (the deprecated pro trainer refused);
- FAL_SIM_PRO_URL (optional): `aisha fal-sim --pro-trainer`, which serves it.

fal-client has no setting for its hosts: the queue URL is `https://{FAL_QUEUE_RUN_HOST}/`
(https only) and the REST and CDN URLs are constants, so the test patches the module constants
`QUEUE_URL_FORMAT`, `REST_URL` and `CDN_URL` of `fal_client.client`.
"""

import io
import json
import os
import struct
import time
import zipfile
import zlib

import httpx
import pytest
from httpx_sse import connect_sse

import fal_client
import fal_client.client as fal_module

KEY = "conformance-key"

PORTRAIT_TRAINER = "fal-ai/flux-lora-portrait-trainer"
STYLE_TRAINER = "fal-ai/flux-lora-fast-training"
PRO_TRAINER = "fal-ai/flux-pro-trainer"
FLUX_LORA = "fal-ai/flux-lora"
ULTRA = "fal-ai/flux-pro/v1.1-ultra-finetuned"
UPSCALER = "fal-ai/seedvr/upscale/image"

# A 1×1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a3e5"
    "d80000000049454e44ae426082"
)


def sim_url(name):
    url = os.environ.get(name, "").rstrip("/")
    return url or None


def base_url():
    url = sim_url("FAL_SIM_URL")
    if url is None:
        pytest.fail("FAL_SIM_URL must name a running `aisha fal-sim`")
    return url


def point_at(monkeypatch, url):
    """Points fal-client's hosts at a simulator."""
    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", f"{url}/queue/")
    monkeypatch.setattr(fal_module, "RUN_URL_FORMAT", f"{url}/run/")
    monkeypatch.setattr(fal_module, "REST_URL", f"{url}/rest")
    monkeypatch.setattr(fal_module, "CDN_URL", url)


@pytest.fixture
def sim(monkeypatch):
    url = base_url()
    point_at(monkeypatch, url)
    return url


@pytest.fixture
def client(sim):
    # A fresh client per test: the CDN token manager reads REST_URL when it is made.
    return fal_client.SyncClient(key=KEY)


def photo_zip(count=3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(count):
            archive.writestr(f"photo_{n}.png", PNG)
    return buffer.getvalue()


def download(url):
    response = httpx.get(url)
    assert response.status_code == 200, url
    return response.content


def png(width, height):
    """A real (decodable) RGB PNG of a flat colour: the upscaler decodes what it is given."""

    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x40\x80\xc0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_size(data):
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def jpeg_size(data):
    """(width, height) from a JPEG's start-of-frame segment."""
    assert data[:2] == b"\xff\xd8", "a JPEG"
    at = 2
    while at + 4 <= len(data):
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        # SOF0…SOF15, except DHT (C4), JPG (C8) and DAC (CC), carry the frame's size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return width, height
        at += 2 + length
    raise AssertionError("no start-of-frame segment")


def received(sim, kind):
    requests = httpx.get(f"{sim}/_sim/requests").json()
    return [r for r in requests if r["kind"] == kind]


def run_to_completion(handle):
    """Follows a request with status and logs until COMPLETED; answers the statuses seen."""
    seen = list(handle.iter_events(with_logs=True, interval=0.05))
    assert isinstance(seen[-1], fal_client.Completed), seen
    order = {fal_client.Queued: 0, fal_client.InProgress: 1, fal_client.Completed: 2}
    ranks = [order[type(status)] for status in seen]
    assert ranks == sorted(ranks), f"never backwards: {seen}"
    return seen


def check_logs(seen):
    for status in seen:
        if isinstance(status, (fal_client.InProgress, fal_client.Completed)):
            assert isinstance(status.logs, list)
            for line in status.logs:
                assert {"message", "level", "source", "timestamp"} <= set(line)
    final = seen[-1]
    assert final.error is None and final.error_type is None
    assert any(line["message"] == "Request completed" for line in final.logs)
    assert "inference_time" in final.metrics


def upload_archive(client):
    return client.upload(photo_zip(), "application/zip", "photos.zip")


def train_portrait(client):
    archive = upload_archive(client)
    handle = client.submit(
        PORTRAIT_TRAINER,
        {
            "images_data_url": archive,
            "trigger_phrase": "PERSON_1a2b3c4d",
            "steps": 300,
            "learning_rate": 0.0003,
            "multiresolution_training": True,
            "subject_crop": True,
            "create_masks": False,
        },
    )
    check_logs(run_to_completion(handle))
    return handle.get()


def train_style(client):
    archive = upload_archive(client)
    # Exactly what Aisha submits for a style avatar.
    handle = client.submit(
        STYLE_TRAINER,
        {
            "images_data_url": archive,
            "trigger_word": "STYLE_1a2b3c4d",
            "is_style": True,
            "create_masks": False,
            "steps": 500,
        },
    )
    seen = run_to_completion(handle)
    check_logs(seen)
    assert any(line["message"].startswith("Training step") for line in seen[-1].logs)
    return handle.get()


def check_lora_output(output):
    lora_url = output["diffusers_lora_file"]["url"]
    lora = download(lora_url)
    header_len = int.from_bytes(lora[:8], "little")
    header = json.loads(lora[8 : 8 + header_len])
    assert "__metadata__" in header
    config = json.loads(download(output["config_file"]["url"]))
    assert config["base_model"] == "FLUX.1-dev"
    return lora_url, header["__metadata__"]


# ------------------------------------------------------------------------------------------
# Uploads
# ------------------------------------------------------------------------------------------


def test_upload_goes_through_the_cdn_with_a_token(client, sim):
    # fal-client falls back to the storage flow when the CDN fails: that must not be needed.
    fallbacks = len(received(sim, "storage_initiate"))
    data = photo_zip()
    url = client.upload(data, "application/zip", "photos.zip")
    assert url.startswith(f"{sim}/files/") and url.endswith("/photos.zip")
    assert download(url) == data
    assert received(sim, "storage_token"), "a CDN token was asked for"
    assert received(sim, "cdn_upload"), "the bytes went to the CDN"
    assert len(received(sim, "storage_initiate")) == fallbacks, "no fallback"


def test_upload_file_guesses_the_type_from_the_name(client, tmp_path):
    path = tmp_path / "album.zip"
    path.write_bytes(photo_zip(2))
    url = client.upload_file(path)
    assert url.endswith("/album.zip")
    assert download(url) == path.read_bytes()
    head = httpx.get(url)
    assert head.headers["content-type"] == "application/zip"


def test_upload_through_the_storage_initiate_flow(client, sim):
    data = b"through the fal repository"
    url = client.upload(data, "text/plain", "notes.txt", repository="fal")
    assert download(url) == data
    initiated = received(sim, "storage_initiate")
    assert initiated and "storage_type=gcs" in (initiated[-1]["query"] or "")


def test_large_uploads_go_multipart(client, monkeypatch, sim):
    # The client's own thresholds (100 MB, 10 MB parts), made small.
    monkeypatch.setattr(fal_module, "MULTIPART_THRESHOLD", 2048)
    monkeypatch.setattr(fal_module, "MULTIPART_CHUNK_SIZE", 1024)
    data = bytes(range(256)) * 20  # 5120 bytes: 5 parts
    before = len(received(sim, "cdn_upload"))
    fallbacks = len(received(sim, "storage_initiate"))
    url = client.upload(data, "application/octet-stream", "weights.bin")
    assert download(url) == data
    # Create, 5 parts, complete; no fallback to the storage flow.
    assert len(received(sim, "cdn_upload")) - before == 7
    assert len(received(sim, "storage_initiate")) == fallbacks


def test_uploads_with_a_lifetime_expire_in_every_upload_flow(client, monkeypatch, sim):
    # fal-client's `lifecycle` sends X-Fal-Object-Lifecycle and -Preference with
    # {"expiration_duration_seconds": N}, as Aisha's client does for its training archives; the
    # simulator must read it from each flow and stop serving the file when N seconds are up.
    monkeypatch.setattr(fal_module, "MULTIPART_THRESHOLD", 2048)
    monkeypatch.setattr(fal_module, "MULTIPART_CHUNK_SIZE", 1024)
    brief = fal_client.StorageSettings(expires_in=2)
    small, large = photo_zip(), bytes(range(256)) * 20
    uploads = [
        (small, "cdn.zip", {}),
        (small, "initiate.zip", {"repository": "fal"}),
        (large, "multipart.bin", {}),
    ]
    expiring = []
    for data, name, flow in uploads:
        url = client.upload(data, "application/octet-stream", name, lifecycle=brief, **flow)
        # At once: the lifetime runs from the upload.
        assert httpx.get(url).status_code == 200, url
        expiring.append(url)
    kept = [
        client.upload(small, "application/zip", "kept.zip"),
        client.upload(small, "application/zip", "hour.zip",
                      lifecycle=fal_client.StorageSettings(expires_in="1h")),
        client.upload(small, "application/zip", "never.zip",
                      lifecycle=fal_client.StorageSettings(expires_in="never")),
    ]
    for url in expiring:
        gone_within(url, 10)
    for url in kept:
        assert httpx.get(url).status_code == 200, url


def gone_within(url, seconds):
    """Waits until `url` answers 404: a file's lifetime has run out (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    while httpx.get(url).status_code != 404:
        assert time.monotonic() < deadline, f"{url} outlived its lifetime"
        time.sleep(0.05)


def test_a_trainer_cannot_read_an_expired_archive(client):
    archive = client.upload(
        photo_zip(), "application/zip", "photos.zip",
        lifecycle=fal_client.StorageSettings(expires_in=1),
    )
    gone_within(archive, 10)
    handle = client.submit(PORTRAIT_TRAINER, arguments={"images_data_url": archive})
    run_to_completion(handle)
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        handle.get()
    assert refused.value.status_code == 422
    assert "file not found" in json.dumps(refused.value.message)


def test_a_submits_lifecycle_header_sets_how_long_its_outputs_live(client):
    # The header FAL documents for submits (Aisha sends it on every job, a backstop for
    # deleting the job's payloads), passed as fal-client passes any platform header.
    arguments = {"prompt": "a kite over the dunes", "num_images": 1}
    lifetime = {"X-Fal-Object-Lifecycle-Preference": json.dumps({"expiration_duration_seconds": 2})}
    brief = client.submit(FLUX_LORA, arguments, headers=lifetime)
    kept = client.submit(FLUX_LORA, arguments)
    run_to_completion(brief)
    run_to_completion(kept)
    brief_url = brief.get()["images"][0]["url"]
    kept_url = kept.get()["images"][0]["url"]
    # No sooner than asked: the lifetime runs from when the job made the file.
    assert httpx.get(brief_url).status_code == 200, brief_url
    gone_within(brief_url, 10)
    assert httpx.get(kept_url).status_code == 200, kept_url
    # A header that is not FAL's JSON is refused at the submit, as on uploads.
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        client.submit(FLUX_LORA, arguments,
                      headers={"X-Fal-Object-Lifecycle-Preference": "two seconds"})
    assert refused.value.status_code == 422


# ------------------------------------------------------------------------------------------
# Every endpoint Aisha uses
# ------------------------------------------------------------------------------------------


def test_portrait_training_then_generation_with_its_lora(client):
    output = train_portrait(client)
    lora_url, metadata = check_lora_output(output)
    assert metadata["trigger_phrase"] == "PERSON_1a2b3c4d"

    updates = []
    result = client.subscribe(
        FLUX_LORA,
        {
            "prompt": "PERSON_1a2b3c4d in a garden",
            "loras": [{"path": lora_url, "scale": 1.0}],
            "image_size": "portrait_4_3",
            "num_inference_steps": 28,
            "guidance_scale": 3.5,
            "num_images": 2,
        },
        with_logs=True,
        on_queue_update=updates.append,
        interval=0.05,
    )
    assert isinstance(updates[-1], fal_client.Completed)
    assert len(result["images"]) == 2
    assert result["has_nsfw_concepts"] == [False, False]
    for image in result["images"]:
        assert image["height"] > image["width"], "portrait_4_3"
        assert download(image["url"])[:3] == b"\xff\xd8\xff", "JPEG by default"


def test_style_training_on_the_lora_trainer_then_generation(client):
    output = train_style(client)
    lora_url, metadata = check_lora_output(output)
    assert metadata["trigger_word"] == "STYLE_1a2b3c4d"

    handle = client.submit(
        FLUX_LORA,
        {
            "prompt": "STYLE_1a2b3c4d a harbour at dusk",
            "loras": [{"path": lora_url, "scale": 1.0}],
            "image_size": {"width": 768},
            "num_images": 1,
        },
    )
    check_logs(run_to_completion(handle))
    result = handle.get()
    image = result["images"][0]
    assert image["width"] > image["height"], "768 wide, the height defaults to 512"

    # The status by request id, as fal-client builds its URL (owner/app only).
    status = client.status(FLUX_LORA, handle.request_id, with_logs=True)
    assert isinstance(status, fal_client.Completed)
    assert client.result(FLUX_LORA, handle.request_id) == result


def test_the_pro_trainer_is_refused_as_deprecated(client):
    archive = upload_archive(client)
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        client.submit(
            PRO_TRAINER,
            {"data_url": archive, "mode": "style", "finetune_comment": "Ink"},
        )
    assert refused.value.status_code == 410
    assert "deprecated" in str(refused.value)


def test_pro_trainer_and_ultra_generation_when_re_enabled(monkeypatch):
    url = sim_url("FAL_SIM_PRO_URL")
    if url is None:
        pytest.skip("FAL_SIM_PRO_URL not set: no simulator serves the pro trainer")
    point_at(monkeypatch, url)
    client = fal_client.SyncClient(key=KEY)
    archive = upload_archive(client)

    # It requires its comment: the job is taken, then refuses the input.
    handle = client.submit(PRO_TRAINER, {"data_url": archive, "mode": "style"})
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        handle.get(interval=0.05)
    assert refused.value.status_code == 422
    assert refused.value.message[0]["loc"] == ["body", "finetune_comment"]

    handle = client.submit(
        PRO_TRAINER,
        {
            "data_url": archive,
            "mode": "general",
            "iterations": 300,
            "trigger_word": "STYLE_9",
            "finetune_comment": "Ink",
        },
    )
    check_logs(run_to_completion(handle))
    finetune_id = handle.get()["finetune_id"]

    handle = client.submit(
        ULTRA,
        {
            "prompt": "STYLE_9 a lighthouse",
            "finetune_id": finetune_id,
            "finetune_strength": 1.1,
            "aspect_ratio": "1:1",
            "num_images": 1,
            "raw": False,
        },
    )
    # Submitted to the full model id, answered with URLs on the app id alone.
    assert "/queue/fal-ai/flux-pro/requests/" in handle.status_url
    check_logs(run_to_completion(handle))
    image = handle.get()["images"][0]
    assert image["width"] == image["height"]
    status = client.status(ULTRA, handle.request_id, with_logs=False)
    assert isinstance(status, fal_client.Completed) and status.logs is None


def test_ultra_takes_any_aspect_ratio_and_checks_its_finetune_when_run(client):
    handle = client.submit(
        ULTRA,
        {
            "prompt": "a castle",
            "finetune_id": "not-one-of-ours",
            "finetune_strength": 1.0,
            "aspect_ratio": "5:4",
        },
    )
    final = run_to_completion(handle)[-1]
    assert final.error_type == "validation_error"
    assert "Finetune not found" in final.error
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        handle.get()
    assert refused.value.status_code == 422
    assert refused.value.message[0]["loc"] == ["body", "finetune_id"]


def test_the_upscaler_answers_one_image_factor_times_the_size(client):
    # A picture of the generator's, as Aisha upscales one.
    generated = client.subscribe(
        FLUX_LORA,
        {
            "prompt": "a lighthouse",
            "image_size": {"width": 48, "height": 32},
            "output_format": "png",
        },
        interval=0.05,
    )
    source = generated["images"][0]["url"]
    assert png_size(download(source)) == (48, 32)

    for factor in (2, 4):
        # Exactly what Aisha submits.
        handle = client.submit(
            UPSCALER,
            {"image_url": source, "upscale_mode": "factor", "upscale_factor": float(factor)},
        )
        seen = run_to_completion(handle)
        check_logs(seen)
        assert any(line["message"].startswith("Upscaling") for line in seen[-1].logs)
        result = handle.get()
        assert set(result) == {"image", "seed"}, result
        assert isinstance(result["seed"], int)
        image = result["image"]
        assert (image["width"], image["height"]) == (48 * factor, 32 * factor)
        data = download(image["url"])
        # No output format was asked for: the model's default, jpg.
        assert image["content_type"] == "image/jpeg"
        assert image["file_name"].endswith(".jpg")
        assert image["file_size"] == len(data)
        assert jpeg_size(data) == (image["width"], image["height"])

    # An uploaded picture, upscaled to a PNG.
    uploaded = client.upload(png(6, 4), "image/png", "small.png")
    result = client.subscribe(
        UPSCALER,
        {"image_url": uploaded, "upscale_factor": 3, "output_format": "png"},
        interval=0.05,
    )
    assert result["image"]["content_type"] == "image/png"
    assert png_size(download(result["image"]["url"])) == (18, 12)
    assert (result["image"]["width"], result["image"]["height"]) == (18, 12)

    # A factor outside 1–10 is taken, then refused naming the field.
    handle = client.submit(UPSCALER, {"image_url": uploaded, "upscale_factor": 11})
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        handle.get(interval=0.05)
    assert refused.value.status_code == 422
    assert refused.value.message[0]["loc"] == ["body", "upscale_factor"]
    assert refused.value.message[0]["type"] == "less_than_equal"


# ------------------------------------------------------------------------------------------
# Failures, cancellation, streaming
# ------------------------------------------------------------------------------------------


def test_invalid_input_is_taken_then_refused_with_fals_validation_error(client):
    handle = client.submit(FLUX_LORA, {"num_images": 9, "loras": []})
    assert handle.request_id
    final = run_to_completion(handle)[-1]
    assert final.error_type == "validation_error"
    assert "body.prompt: Field required" in final.error
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        handle.get()
    error = refused.value
    assert error.status_code == 422
    # fal-client reads the type from the body or, failing that, `x-fal-error-type`.
    assert error.error_type == "validation_error"
    assert error.response_headers["x-fal-error-type"] == "validation_error"
    assert [issue["loc"] for issue in error.message] == [
        ["body", "prompt"],
        ["body", "num_images"],
    ]


def test_cancel_a_queued_request_and_not_a_finished_one(client):
    handle = client.submit(FLUX_LORA, {"prompt": "cancel me"})
    handle.cancel()
    final = run_to_completion(handle)[-1]
    assert final.error_type == "client_cancelled"
    with pytest.raises(fal_client.FalClientHTTPError) as cancelled:
        handle.get()
    assert cancelled.value.status_code == 400

    # A finished request cannot be cancelled.
    with pytest.raises(fal_client.FalClientHTTPError) as late:
        client.cancel(FLUX_LORA, handle.request_id)
    assert late.value.status_code == 400
    assert late.value.response.json() == {"status": "ALREADY_COMPLETED"}


def test_the_status_streams_as_server_sent_events(client):
    """fal-client 1.0.3 only polls; fal-js's `streamStatus` reads `…/status/stream`, one
    `data: {status}` event per change until COMPLETED. Read it with httpx-sse, which fal-client
    itself uses for its streams."""
    handle = client.submit(FLUX_LORA, {"prompt": "a stream", "image_size": "square"})
    events = []
    with httpx.Client(headers={"Authorization": f"Key {KEY}"}, timeout=60) as http:
        with connect_sse(
            http, "GET", f"{handle.status_url}/stream", params={"logs": "1"}
        ) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith(
                "text/event-stream"
            )
            for event in source.iter_sse():
                events.append(event.json())
    states = [event["status"] for event in events]
    assert states[0] in ("IN_QUEUE", "IN_PROGRESS"), states
    assert states[-1] == "COMPLETED" and states.count("COMPLETED") == 1, states
    assert "IN_PROGRESS" in states, states
    assert all(isinstance(event["logs"], list) for event in events)
    assert events[-1]["logs"][-1]["message"] == "Request completed"
    assert handle.get()["images"]
