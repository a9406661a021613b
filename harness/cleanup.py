"""A LIFO cleanup queue, after the kernel's selftests/net/lib/py `defer`.

    with Cleanup() as defer:
        dev = swap.add(...)
        defer(swap.remove, dev)

Every deferred call runs, last first, even when an earlier one raises; the
first exception is re-raised after all have run.
"""


class Cleanup:
    def __init__(self):
        self._stack = []

    def __call__(self, fn, *args, **kwargs):
        self._stack.append((fn, args, kwargs))

    def run(self):
        first = None
        while self._stack:
            fn, args, kwargs = self._stack.pop()
            try:
                fn(*args, **kwargs)
            except BaseException as exc:  # keep cleaning; report the first
                first = first or exc
        if first is not None:
            raise first

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.run()
        return False
