"""A process holding every kind of mapping pmap has to name: run by the comparison tests.

Prints `pid N`, `tid N` (a second thread), `zombie N` (an unreaped child) and `ready`, then
waits until stdin closes and cleans up after itself.
"""
import ctypes
import mmap
import os
import shutil
import sys
import tempfile
import threading

PAGE = mmap.PAGESIZE
MAP_NORESERVE = 0x4000
keep = []
tmp = tempfile.mkdtemp(prefix="pmap-zoo-").encode()


def map_file(path, size=PAGE, delete=False):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    keep.append(mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ))
    os.close(fd)
    if delete:
        os.unlink(path)


for name in [b"with space", "Páramo".encode(), b"tab\there", b"ctrl\x01x", b"new\nline",
             b"bad\xffbyte", b"ends-with-dot."]:
    map_file(os.path.join(tmp, name))
map_file(os.path.join(tmp, b"deleted file"), delete=True)

# A path long enough that its maps line is longer than procps's 1024-byte line buffer.
deep = tmp
while len(deep) < 1500:
    deep = os.path.join(deep, b"d" * 200)
    os.mkdir(deep)
map_file(os.path.join(deep, b"long-path-file"))

shm_path = "/dev/shm/pmap-zoo-%d" % os.getpid()
map_file(shm_path.encode())

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(0, 65536, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
if shmid >= 0:
    libc.shmat(shmid, None, 0)
    libc.shmctl(shmid, 0, None)  # IPC_RMID: gone once we detach (at exit)

memfd = os.memfd_create("zoo memfd")
os.ftruncate(memfd, 2 * PAGE)
keep.append(mmap.mmap(memfd, 2 * PAGE, mmap.MAP_SHARED))
keep.append(mmap.mmap(-1, 2 * PAGE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS))
keep.append(mmap.mmap(-1, 3 * PAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, 0))  # guard (PROT_NONE)
keep.append(mmap.mmap(-1, 1 << 30, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, 0))

stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()

zombie = os.fork()
if zombie == 0:
    os._exit(0)

print("pid", os.getpid())
print("tid", thread.native_id)
print("zombie", zombie)
print("tmp", tmp.decode(errors="replace"))
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    stop.set()
    thread.join()
    os.waitpid(zombie, 0)
    os.unlink(shm_path)
    shutil.rmtree(tmp)
