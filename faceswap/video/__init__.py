"""Video I/O: probe a file, plan shards, decode exact frame ranges, encode segments, assemble the film.

    probe(path) + keyframes(path) -> plan_video_shards -> iter_frames(path, start, stop)
        -> SegmentWriter per shard -> assemble(segments, source, out, metadata)
"""
