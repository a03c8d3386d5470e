"""Assemble: a convert run's segments -> the film, with the source's audio and the provenance tags.

    work/convert.json (the plan) -> every segment present? -> concat without re-encoding
      + the source's audio + synthetic-media tags (+ the visible label's text) -> output (published atomically)

`faceswap convert` ends with it; `faceswap assemble WORK --out FILE` runs it alone on a
finished work folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from faceswap.errors import FaceswapError, InputError
from faceswap.storage import Store, is_remote, local_input, normalize_uri, split_uri

# Containers that hold H.264, the source's audio and the provenance tags `verify` reads.
OUTPUT_FORMATS = (".mp4", ".mov", ".m4v", ".mkv")


def check_output(out: str, video: str | None = None) -> None:
    """Refuse, before any work, an output the film cannot be written to."""
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"{out}: unsupported output format '{suffix or 'no extension'}' (use "
                         f"{', '.join(OUTPUT_FORMATS)}: they carry the synthetic-media tags)")
    if is_remote(out):
        if video is not None and is_remote(video) and normalize_uri(out) == normalize_uri(video):
            raise InputError(f"{out}: is the input video; choose another --out")
        return
    path = normalize_uri(out)
    if os.path.isdir(path):
        raise InputError(f"{out}: is a folder; give the output file's name")
    if video is not None and not is_remote(video):
        source = normalize_uri(video)
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise InputError(f"{out}: is the input video; choose another --out")


def assemble_plan(plan, out: str) -> str:
    """Join the plan's segments in order, add the source's audio and the provenance tags."""
    from faceswap.provenance.metadata import provenance_tags
    from faceswap.video.assemble import assemble

    work = Store(plan.work)
    keys = [plan.segment_key(sh["id"]) for sh in plan.shards]
    missing = [k for k in keys if not work.exists(k)]
    if missing:
        raise FaceswapError(f"{work.uri}: {len(missing)} segment(s) missing (first: {missing[0]}); "
                            "rerun convert to finish them")
    tags = provenance_tags(plan.fingerprint)
    label = plan.settings.get("label")
    if label:
        tags["faceswap_label"] = label
    out_store, out_name = split_uri(out)
    with (local_input(plan.settings["video"]) as source, tempfile.TemporaryDirectory(prefix="faceswap-asm-") as tmp,
          contextlib.ExitStack() as stack):
        paths = []
        for i, key in enumerate(keys):
            if work.remote:  # into this run's temporary folder, not the node's download cache
                paths.append(work.get_file(key, os.path.join(tmp, f"{i:06d}{os.path.splitext(key)[1]}")))
            else:
                paths.append(stack.enter_context(work.local_path(key)))
        local_out = os.path.join(tmp, out_name)
        assemble(paths, source, local_out, tags)
        out_store.put_file(local_out, out_name)  # atomic: a reader never sees half a film
    return out


def run_assemble(work_uri: str, out: str) -> str:
    """`faceswap assemble WORK --out FILE`: assemble an existing convert run."""
    from faceswap.stages.convert import PLAN_KEY, ConvertPlan

    work = Store(work_uri)
    if not work.exists(PLAN_KEY):
        raise InputError(f"{work.uri}: not a convert work folder (no {PLAN_KEY})")
    plan = ConvertPlan.from_json(work.read_text(PLAN_KEY), work.url(PLAN_KEY))
    check_output(out, plan.settings["video"])
    split_uri(out)[0].check_writable()
    assemble_plan(plan, out)
    print(f"assembled {len(plan.shards)} segments -> {out}")
    return out
