"""Training samples from a face set, streamed: never the whole face set in memory.

    alignments/*.parquet (keys + landmarks + matrix, small)
      -> per-epoch permutation (or, with ``balance``, draws weighted to rare poses), this worker's slice (rank::world)
      -> decode threads: read crop (local or s3) -> resize to the model size -> landmark maps
      -> bounded shuffle buffer -> batches (uint8 NHWC)

Why not Ray Data here: training draws an endless, reshuffled stream from a
few hundred to a few hundred thousand small crops, two face sets at once,
inside each Ray Train worker. A thread-fed shuffle buffer per worker does
that with no extra processes on a 2-core laptop; the only shared state is the
alignment table, which is tiny. Decoded crops are kept in a bounded cache so a
small face set is decoded once, and a large one streams.
"""

from __future__ import annotations

import collections
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from faceswap.errors import InputError
from faceswap.faceset import FaceRecord, FaceSet
from faceswap.model.balance import draw_weights
from faceswap.model.losses import landmark_maps
from faceswap.storage import Store

def decode_sample(store: Store, record: FaceRecord, size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> image uint8 (size, size, 3) RGB, maps uint8 (size, size, 3) (hull mask, eye/mouth, hands)."""
    data = store.read_bytes(record.crop)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{store.url(record.crop)}: not a readable image")
    if bgr.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if bgr.shape[0] > size else cv2.INTER_LINEAR
        bgr = cv2.resize(bgr, (size, size), interpolation=interp)
    scale = size / record.size
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), landmark_maps(record.landmarks * scale, size,
                                                               [h * scale for h in record.hands])


class FaceStream:
    """An endless, shuffled stream of samples for one worker.

    ``next_batch(n)`` -> (images uint8 (n, S, S, 3), maps uint8 (n, S, S, 3)).
    ``wait_s`` accumulates the time spent blocked on decoding.
    """

    def __init__(self, uri: str, size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 buffer: int = 256, threads: int = 2, cache_mb: int = 256, balance: float = 0.0,
                 hands: bool = True):
        self.store = Store(uri)
        self.records, self.info = FaceSet(uri).training_records(hands)
        self.hand_faces = sum(1 for r in self.records if r.hands)  # faces with a hand in their frame
        # Rare poses and expressions drawn more often (model.balance); None: every face alike.
        self._weights = draw_weights([r.landmarks for r in self.records], balance) if balance > 0 else None
        # How many times more often than in a uniform draw the rarest face is drawn.
        self.rarest_gain = float(self._weights.max() * len(self.records)) if self._weights is not None else 1.0
        self.size, self.rank, self.world, self.seed = size, rank, world, seed
        self.buffer_size = buffer
        self.wait_s = 0.0
        self._rng = random.Random(seed * 1000 + rank)
        self._queue: queue.Queue = queue.Queue(maxsize=max(8, buffer // 2))
        self._buffer: list = []
        self._fill = min(buffer, len(self._order(0)))
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_left = cache_mb * 2 ** 20
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._prefetch = 4 * threads
        # Once every face of the set is in the cache, the consumer walks the same epoch orders itself:
        # no thread hand-off per sample (the common case of a face set that fits in memory).
        self._direct_epoch: int | None = None
        self._distinct_crops = len({r.crop for r in self.records})
        self._direct_order: collections.deque = collections.deque()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="faceset-decode")
        self._thread = threading.Thread(target=self._produce, name="faceset-reader", daemon=True)
        self._thread.start()

    def _order(self, epoch: int) -> list[int]:
        if self._weights is None:
            order = list(range(len(self.records)))
            random.Random(self.seed * 7919 + epoch).shuffle(order)   # same on every rank ...
        else:  # an epoch of as many draws as faces, each face as often as its weight says
            rng = np.random.default_rng(self.seed * 7919 + epoch)
            order = rng.choice(len(self.records), size=len(self.records), p=self._weights).tolist()
        mine = order[self.rank::self.world]                       # ... so the slices are disjoint
        return mine or order[self.rank % len(order)::len(order)]  # fewer faces than workers

    def _load(self, i: int):
        rec = self.records[i]
        hit = self._cache.get(rec.crop)
        if hit is not None:
            return hit
        sample = decode_sample(self.store, rec, self.size)
        nbytes = sample[0].nbytes + sample[1].nbytes
        if nbytes <= self._cache_left:
            self._cache[rec.crop] = sample
            self._cache_left -= nbytes
        return sample

    def _produce(self):
        try:
            epoch = 0
            while not self._stop.is_set():
                # A bounded window of decodes in flight (Executor.map would submit the whole epoch).
                pending: collections.deque = collections.deque()
                order = iter(self._order(epoch))
                while True:
                    while len(pending) < self._prefetch:
                        i = next(order, None)
                        if i is None:
                            break
                        pending.append(self._pool.submit(self._load, i))
                    if not pending:
                        break
                    sample = pending.popleft().result()
                    while not self._stop.is_set():
                        try:
                            self._queue.put(sample, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
                epoch += 1
                # Every face of the set, not only this epoch's: with several workers a worker's slice
                # changes from epoch to epoch.
                if len(self._cache) >= self._distinct_crops:
                    self._direct_epoch = epoch
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._error = exc
            self._queue.put(None)

    def _take(self):
        if self._direct_epoch is not None and self._queue.empty():
            if not self._direct_order:
                self._direct_order.extend(self._order(self._direct_epoch))
                self._direct_epoch += 1
            return self._load(self._direct_order.popleft())
        t0 = time.perf_counter()
        item = self._queue.get()
        self.wait_s += time.perf_counter() - t0
        if item is None and self._error is not None:
            raise self._error
        return item

    def next_batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        while len(self._buffer) < self._fill:
            self._buffer.append(self._take())
        images, maps = [], []
        for _ in range(n):
            # Classic shuffle buffer: emit a random slot, refill it from the stream.
            j = self._rng.randrange(len(self._buffer))
            img, mp = self._buffer[j]
            images.append(img)
            maps.append(mp)
            self._buffer[j] = self._take()
        return np.stack(images), np.stack(maps)

    def close(self):
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread.join(timeout=5)
