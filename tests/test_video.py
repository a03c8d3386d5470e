"""Video I/O on real files: probe, keyframes, shard plans, exact decode, encode, assemble."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from faceswap.errors import InputError
from faceswap.samples import read_barcode
from faceswap.video.assemble import assemble
from faceswap.video import decode
from faceswap.video.decode import choose_decoder, iter_frames
from faceswap.video.encode import SegmentWriter, fps_fraction
from faceswap.video.ffmpeg import FFmpegError, ffmpeg_exe, run_ffmpeg
from faceswap.video.probe import VideoInfo, keyframes, probe
from faceswap.video.shards import Shard, plan_video_shards, source_id, target_shard_frames

FPS = 25


@pytest.fixture(scope="module")
def clip(samples_dir) -> str:
    return str(Path(samples_dir) / "a_small.mp4")


@pytest.fixture(scope="module")
def made(tmp_path_factory, clip) -> Path:
    """Derived test inputs, made once: bad files, rotated, VFR, mkv, mov with PCM audio."""
    d = tmp_path_factory.mktemp("made")
    data = Path(clip).read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov sits at the end: cut off
    run_ffmpeg(["-i", clip, "-c", "copy", "-movflags", "+faststart", str(d / "faststart.mp4")], "faststart")
    faststart = (d / "faststart.mp4").read_bytes()
    (d / "truncated_faststart.mp4").write_bytes(faststart[: len(faststart) // 2])  # index intact, frames cut
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    (d / "empty.mp4").write_bytes(b"")
    run_ffmpeg(["-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(d / "audio_only.m4a")], "audio only")
    # Phone-style rotation: pixels stored turned clockwise, display matrix turns them back.
    upright = [f for _, _, f in iter_frames(clip, 0, 12)]
    for degrees in (90, 270):
        stored = d / f"stored{degrees}.mp4"
        with SegmentWriter(stored, 288, 384, FPS) as writer:
            for frame in upright:
                writer.write(np.ascontiguousarray(np.rot90(frame, -degrees // 90)))
        run_ffmpeg(["-display_rotation", str(degrees), "-i", str(stored), "-c", "copy", str(d / f"rot{degrees}.mp4")], "rot")
    # VFR: frames 20..29 dropped, the others keep their timestamps.
    run_ffmpeg(["-i", clip, "-vf", r"select=not(between(n\,20\,29))", "-fps_mode", "vfr", "-an",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(d / "vfr.mp4")], "vfr")
    run_ffmpeg(["-i", clip, "-c", "copy", str(d / "a.mkv")], "mkv")
    run_ffmpeg(["-ss", "1.3", "-i", clip, "-c", "copy", str(d / "trimmed.mp4")], "cut by an edit list")
    cover = d / "cover.png"
    cover.write_bytes(png_bytes(upright[0]))
    run_ffmpeg(["-f", "lavfi", "-i", "sine=duration=1", "-i", str(cover), "-map", "0", "-map", "1", "-c:a", "aac",
                "-c:v", "mjpeg", "-disposition:v", "attached_pic", str(d / "cover_art.mp4")], "audio with cover art")
    run_ffmpeg(["-i", clip, "-c:v", "copy", "-c:a", "pcm_s16le", str(d / "pcm.mov")], "pcm mov")
    run_ffmpeg(["-i", clip, "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-map", "0:v", "-map", "0:a",
                "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(d / "two_tracks.mp4")], "two audio tracks")
    return d


def png_bytes(rgb: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _codes(path, start=0, stop=None) -> list[int | None]:
    stop = probe(path).frames if stop is None else stop
    return [read_barcode(rgb) for _, _, rgb in iter_frames(path, start, stop)]


# ---------------------------------------------------------------- probe


def test_probe_sample(clip):
    info = probe(clip)
    assert info == VideoInfo(path=clip, frames=100, fps=25.0, width=384, height=288, rotation=0, duration_s=4.0,
                             has_audio=True, audio_duration_s=pytest.approx(4.0, abs=0.04), vfr=False, codec="h264")


@pytest.mark.parametrize("name, problem", [
    ("missing.mp4", "no such file"),
    ("empty.mp4", "empty file"),
    ("text.mp4", "not a video"),
    ("truncated.mp4", "truncated"),
    ("truncated_faststart.mp4", "truncated"),
    ("audio_only.m4a", "no video stream"),
    ("cover_art.mp4", "no video stream"),  # its one picture is the album art
])
def test_probe_bad_input_names_the_file(made, name, problem):
    path = made / name
    with pytest.raises(InputError) as err:
        probe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def decoded_audio_s(path) -> float:
    """Seconds of sound a player gets from the first audio stream: its decoded samples counted."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.codec_context.sample_rate


def test_probe_mkv_counts_packets(made):
    info = probe(made / "a.mkv")  # Matroska declares no frame count or stream durations
    assert (info.frames, info.fps, info.vfr) == (100, 25.0, False)
    # The 4 s of sound, give or take the encoder's priming and padding, which some ffmpeg builds keep
    # when they copy AAC into Matroska: within one AAC frame (1024 samples) of what a player decodes.
    assert 3.95 < info.audio_duration_s < 4.1
    assert info.audio_duration_s == pytest.approx(decoded_audio_s(made / "a.mkv"), abs=1024 / 22050)


def test_a_cut_made_with_stream_copy_is_trimmed_not_truncated(made):
    path = made / "trimmed.mp4"  # -ss 1.3 -c copy: starts at a keyframe, an edit list hides the frames before 1.3 s
    info = probe(path)
    assert 60 <= info.frames < 100
    assert _codes(path) == list(range(100 - info.frames, 100))  # what a player shows, in order
    first = 100 - info.frames
    assert [read_barcode(rgb) for _, _, rgb in iter_frames(path, 10, 20)] == list(range(first + 10, first + 20))


def test_keyframes_from_packet_flags(clip):
    keys = keyframes(clip)
    assert keys[0] == 0 and 50 in keys and all(0 <= k < 100 for k in keys)  # samples use a 2 s GOP


# ---------------------------------------------------------------- shards


def _info(frames: int) -> VideoInfo:
    return VideoInfo("x.mp4", frames, 25.0, 320, 180, 0, frames / 25, False, 0.0, False, "h264")


def test_shards_cover_every_frame_once_with_bounded_lengths():
    rng = random.Random(0)
    for _ in range(2000):
        frames, workers = rng.randint(1, 5000), rng.randint(1, 8)
        shard_frames = rng.choice([0, 0, rng.randint(1, 700)])
        keys = sorted(rng.sample(range(frames), min(frames, rng.randint(0, 60))))
        shards = plan_video_shards("src", "s3://b/x.mp4", _info(frames), keys, shard_frames, workers)
        assert [s.index for s in shards] == list(range(len(shards)))
        assert shards[0].start == 0 and shards[-1].stop == frames
        assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
        target = target_shard_frames(frames, shard_frames, workers)
        lengths = [s.frames for s in shards]
        if len(shards) > 1:
            assert (target + 1) // 2 <= min(lengths) and max(lengths) <= target + target // 2


def test_shards_snap_to_keyframes_and_feed_every_worker():
    keys = list(range(0, 10_000, 48))
    shards = plan_video_shards("src", "u", _info(10_000), keys, shard_frames=300)
    assert all(s.start in keys for s in shards)
    shards = plan_video_shards("src", "u", _info(2_000), [], workers=8)
    assert len(shards) >= 16
    assert len(plan_video_shards("src", "u", _info(30), [], workers=8)) == 1  # too short to split usefully


def test_plan_270k_frames_is_fast():
    keys = list(range(0, 270_000, 250))
    t0 = time.perf_counter()
    shards = plan_video_shards("film", "s3://b/film.mp4", _info(270_000), keys, workers=16)
    assert time.perf_counter() - t0 < 0.5
    assert sum(s.frames for s in shards) == 270_000 and len(shards) >= 32
    assert shards[7].id == "film-00007" and isinstance(shards[7], Shard)


def test_source_id_is_stable_and_safe():
    a = source_id("s3://bucket/films/My Film (2019).mp4")
    assert a == source_id("s3://bucket/films/My Film (2019).mp4")
    assert a.startswith("My_Film_2019-") and all(c.isalnum() or c in "_-" for c in a)
    assert source_id("/data/a/film.mp4") != source_id("/data/b/film.mp4")


# ---------------------------------------------------------------- decode


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
@pytest.mark.parametrize("start, stop", [(0, 100), (37, 83), (51, 52), (99, 100), (50, 50)])
def test_iter_frames_gives_exact_indices(clip, start, stop, decoder):
    got = list(iter_frames(clip, start, stop, decoder=decoder))
    assert [i for i, _, _ in got] == list(range(start, stop))
    assert [read_barcode(rgb) for _, _, rgb in got] == list(range(start, stop))  # 37 is not a keyframe
    assert all(ts == pytest.approx(i / FPS, abs=1e-4) for i, ts, _ in got)
    assert all(rgb.shape == (288, 384, 3) and rgb.dtype == np.uint8 for _, _, rgb in got)


def test_prefetch_keeps_every_frame_in_order(clip):
    with decode.Prefetch(iter_frames(clip, 5, 60), depth=3) as frames:
        got = [(index, read_barcode(rgb)) for index, _, rgb in frames]
    assert got == [(i, i) for i in range(5, 60)]


def test_prefetch_raises_the_decoders_error_at_its_place_and_stops_cleanly():
    def frames():
        yield from range(3)
        raise InputError("film.mp4: decoding stopped at frame 3")

    seen = []
    with pytest.raises(InputError, match="film.mp4: decoding stopped at frame 3"):
        with decode.Prefetch(frames(), depth=2) as items:
            for item in items:
                seen.append(item)
    assert seen == [0, 1, 2]

    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    with decode.Prefetch(endless(), depth=2) as items:  # the consumer leaves early
        assert next(items) == 0
    assert closed == [True]  # the producer thread ended and closed its iterator


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_iter_frames_refuses_range_past_the_end(clip, decoder):
    with pytest.raises(InputError, match="outside"):
        list(iter_frames(clip, 90, 101, decoder=decoder))


def test_pyav_names_frames_by_timestamp_in_every_container(made, clip):
    assert choose_decoder(clip) == "pyav"  # constant rate, proven by the mp4 index
    assert choose_decoder(made / "vfr.mp4") == "pyav"  # through the pts table
    assert choose_decoder(made / "a.mkv") == "pyav"  # Matroska indexes keyframes only: pts table
    assert [read_barcode(rgb) for _, _, rgb in iter_frames(clip, 61, 70)] == list(range(61, 70))
    vfr = list(iter_frames(made / "vfr.mp4", 15, 30, decoder="pyav"))  # across the dropped frames 20..29
    assert [i for i, _, _ in vfr] == list(range(15, 30))
    assert [read_barcode(rgb) for _, _, rgb in vfr] == [*range(15, 20), *range(30, 40)]
    assert [ts for _, ts, _ in vfr] == pytest.approx([c / FPS for c in [*range(15, 20), *range(30, 40)]], abs=1e-3)
    mkv = list(iter_frames(made / "a.mkv", 37, 83, decoder="pyav"))
    assert [(i, read_barcode(rgb)) for i, _, rgb in mkv] == [(i, i) for i in range(37, 83)]
    assert [ts for _, ts, _ in mkv] == pytest.approx([i / FPS for i in range(37, 83)], abs=1e-3)


def test_a_range_from_a_long_film_decodes_on_demand(tmp_path):
    """A shard of a long film must not decode the rest of the film into memory. decord's reader
    does (its first next() floods the decoder with packets: +180 MB here); the default must not."""
    film = tmp_path / "long.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "1500", "-c:v", "libx264",
                "-preset", "ultrafast", "-g", "250", str(film)], "long film")
    script = (
        "import sys, time\n"
        "from faceswap.video.decode import iter_frames\n"
        "def rss():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) * 1024\n"
        "frames = iter_frames(sys.argv[1], 700, 1500)\n"
        "next(frames)\n"
        "before = rss()\n"
        "for _ in range(10):\n"
        "    next(frames)\n"
        "    time.sleep(0.05)  # a worker busy with the frame: a decoder thread would run ahead meanwhile\n"
        "print(rss() - before)\n"
    )
    grown = subprocess.run([sys.executable, "-c", script, str(film)], capture_output=True, text=True, check=True)
    assert int(grown.stdout.strip().splitlines()[-1]) < 32 << 20  # 10 frames of 230 KB, not 790


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
@pytest.mark.parametrize("degrees", [90, 270])
def test_rotated_video_decodes_upright(made, degrees, decoder):
    path = made / f"rot{degrees}.mp4"
    info = probe(path)
    assert (info.rotation, info.width, info.height, info.frames) == (degrees, 384, 288, 12)
    frames = [rgb for _, _, rgb in iter_frames(path, 3, 12, decoder=decoder)]
    assert frames[0].shape == (288, 384, 3)
    assert [read_barcode(f) for f in frames] == list(range(3, 12))
    # The convention decode falls back on for decord builds that ignore rotation:
    # coded pixels turned counter-clockwise by `rotation` are the displayed ones.
    with av.open(str(path)) as container:
        coded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert coded.shape == (384, 288, 3)
    assert read_barcode(np.ascontiguousarray(np.rot90(coded, degrees // 90))) == 0


@pytest.fixture(scope="module")
def blocks_clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """3 frames of 8x6 coloured blocks, 128x96, lossless RGB: any turn or mirror shows."""
    rng = np.random.default_rng(0)
    image = np.kron((rng.random((6, 8, 3)) * 255).astype(np.uint8), np.ones((16, 16, 1), np.uint8))
    path = tmp_path_factory.mktemp("blocks") / "blocks.mp4"
    with SegmentWriter(path, 128, 96, FPS, lossless=True) as writer:
        for _ in range(3):
            writer.write(image)
    return path, image


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize("hflip", [False, True])
def test_every_turn_and_mirror_of_the_display_matrix_decodes_as_ffmpeg_shows_it(blocks_clip, tmp_path, degrees, hflip):
    stored, image = blocks_clip
    path = tmp_path / "shown.mp4"
    run_ffmpeg(["-display_rotation", str(degrees), *(["-display_hflip"] if hflip else []), "-i", str(stored),
                "-c", "copy", str(path)], "display matrix")
    shown = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                            "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout  # ffmpeg turns it
    info = probe(path)
    height, width = (128, 96) if degrees in (90, 270) else (96, 128)
    assert (info.width, info.height, info.rotation, info.mirrored) == (width, height, degrees, hflip)
    (_, _, rgb), = list(iter_frames(path, 1, 2))
    assert rgb.shape == (height, width, 3)
    assert np.abs(rgb.astype(int) - np.frombuffer(shown, np.uint8).reshape(height, width, 3)).max() <= 2


def test_vfr_video_is_detected_and_fully_decoded(made):
    path = made / "vfr.mp4"
    info = probe(path)
    assert info.vfr and info.frames == 90
    got = list(iter_frames(path, 0, 90))
    codes = [read_barcode(rgb) for _, _, rgb in got]
    assert codes == [*range(20), *range(30, 100)]
    assert all(ts == pytest.approx(code / FPS, abs=1e-3) for (_, ts, _), code in zip(got, codes))  # true times


# ---------------------------------------------------------------- encode


@pytest.mark.parametrize("width, height", [(64, 48), (65, 49)])
def test_lossless_writer_round_trips_pixels(tmp_path, width, height):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(5)]
    path = tmp_path / "lossless.mp4"
    with SegmentWriter(path, width, height, FPS, lossless=True) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames_written == 5
    decoded = [rgb for _, _, rgb in iter_frames(path, 0, 5)]
    assert all(np.array_equal(a, b) for a, b in zip(frames, decoded))


def test_lossy_writer_keeps_odd_size_and_rate(tmp_path, clip):
    path = tmp_path / "odd.mp4"
    with SegmentWriter(path, 383, 287, "30000/1001") as writer:
        for _, _, rgb in iter_frames(clip, 0, 10):
            writer.write(np.ascontiguousarray(rgb[:287, :383]))
    info = probe(path)
    assert (info.width, info.height, info.frames) == (383, 287, 10)
    assert fps_fraction(info.fps) == fps_fraction("30000/1001")


def test_writer_failure_is_clear_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.mp4"
    with pytest.raises(FFmpegError, match="bad.mp4.*invalid preset"):
        with SegmentWriter(path, 64, 48, FPS, preset="no-such-preset") as writer:  # x264 refuses it
            for _ in range(200):
                writer.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="frame must be"):
        with SegmentWriter(path, 64, 48, FPS) as writer:
            writer.write(np.zeros((48, 63, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_run_ffmpeg_reports_last_stderr_line(tmp_path):
    with pytest.raises(FFmpegError, match=r"probe thing: ffmpeg failed .*No such file"):
        run_ffmpeg(["-i", str(tmp_path / "nope.mp4"), str(tmp_path / "out.mp4")], "probe thing")


# ---------------------------------------------------------------- assemble


def _segments(clip, tmp_path, bounds, fps=FPS) -> list[Path]:
    paths = []
    for i, (start, stop) in enumerate(bounds):
        paths.append(tmp_path / f"seg{i:03d}.mp4")
        with SegmentWriter(paths[-1], 384, 288, fps) as writer:
            for _, _, rgb in iter_frames(clip, start, stop):
                writer.write(rgb)
    return paths


def test_assemble_joins_segments_with_audio_and_tags(clip, tmp_path):
    segments = _segments(clip, tmp_path, [(0, 37), (37, 50), (50, 100)])
    out = assemble(segments, clip, tmp_path / "out" / "film.mp4", {"faceswap_model": "abc123", "comment": "test"})
    info, source = probe(out), probe(clip)
    assert info.frames == 100 and not info.vfr and info.fps == 25.0
    assert _codes(out) == list(range(100))
    assert info.has_audio and abs(info.audio_duration_s - source.audio_duration_s) <= 1 / FPS
    with av.open(out) as container:
        assert container.metadata["faceswap_model"] == "abc123" and container.metadata["comment"] == "test"
        assert container.streams.audio[0].codec_context.name == "aac"  # copied from the source
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["film.mp4"]


def test_assemble_gives_a_vfr_source_its_own_frame_times(made, tmp_path):
    source = made / "vfr.mp4"  # frames 20..29 dropped: a 0.44 s gap in the timestamps
    info = probe(source)
    segments = _segments(source, tmp_path, [(0, 45), (45, 90)], fps=fps_fraction(info.fps))  # constant rate
    out = assemble(segments, source, tmp_path / "film.mp4", {})
    got = list(iter_frames(out, 0, 90))
    assert [read_barcode(rgb) for _, _, rgb in got] == [*range(20), *range(30, 100)]
    source_times = [ts for _, ts, _ in iter_frames(source, 0, 90)]
    assert [ts for _, ts, _ in got] == pytest.approx(source_times, abs=1e-4)  # to the tick of the source


def test_assemble_keeps_every_audio_track(made, clip, tmp_path):
    segments = _segments(clip, tmp_path, [(0, 100)])
    out = assemble(segments, made / "two_tracks.mp4", tmp_path / "film.mkv", {})
    with av.open(out) as container:
        assert [s.codec_context.name for s in container.streams.audio] == ["aac", "aac"]


def test_assemble_reencodes_audio_mp4_cannot_hold(made, clip, tmp_path):
    segments = _segments(clip, tmp_path, [(0, 100)])
    out = assemble(segments, made / "pcm.mov", tmp_path / "film.mp4", {})
    with av.open(out) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    # As long as the source's sound (4 s, plus the AAC padding ffmpeg keeps when it decodes to PCM).
    assert probe(out).audio_duration_s == pytest.approx(decoded_audio_s(made / "pcm.mov"), abs=1 / FPS)


def test_assemble_refuses_segments_at_another_rate(clip, tmp_path):
    segments = _segments(clip, tmp_path, [(0, 10)], fps=30)
    with pytest.raises(InputError, match="30.000 fps"):
        assemble(segments, clip, tmp_path / "film.mp4", {})
    with pytest.raises(InputError, match="segment missing"):
        assemble([tmp_path / "nope.mp4"], clip, tmp_path / "film.mp4", {})
