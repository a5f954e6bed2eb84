"""Device memory as nvidia-smi sees it (standard library only): one reading, or a background poller.

The poller runs `nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i GPU -lms 200` and keeps the
largest reading (MiB). The peak of a process = max while it runs - the reading before it started (CUDA context and
caching-allocator slack included, unlike torch.cuda.max_memory_allocated).
"""
import os
import shutil
import subprocess
import tempfile


def gpu_index():
    """The nvidia-smi index of the GPU a process will use (first of CUDA_VISIBLE_DEVICES when it names indices)."""
    v = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return v if v else "0"


def available():
    return shutil.which("nvidia-smi") is not None


def used_mib(idx=None):
    """One reading of memory.used in MiB, or None."""
    if not available():
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                            "-i", idx or gpu_index()], capture_output=True, text=True, timeout=30)
        return int(float(r.stdout.strip().splitlines()[0]))
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


class Poller:
    """with Poller() as p: ...; p.max_mib (None when nvidia-smi is missing), p.samples."""

    def __init__(self, period_ms=200, idx=None):
        self.period_ms, self.idx = period_ms, idx or gpu_index()
        self.proc, self.file = None, None
        self.max_mib, self.samples = None, 0

    def __enter__(self):
        if available():
            self.file = tempfile.TemporaryFile(mode="w+")
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                          "-i", self.idx, "-lms", str(self.period_ms)],
                                         stdout=self.file, stderr=subprocess.DEVNULL)
        return self

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.file.seek(0)
        vals = []
        for line in self.file:
            try:
                vals.append(int(float(line.strip())))
            except ValueError:
                pass
        self.file.close()
        self.samples = len(vals)
        self.max_mib = max(vals) if vals else None

    def __exit__(self, *exc):
        self.stop()
        return False
