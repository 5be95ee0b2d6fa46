# One connection: N gets (or sets) of one item of SIZE bytes, each reply checked
# whole; prints the wall time per op. bench/memcache-cpu.sh drives it.
#   python3 bench/memcache-get.py PORT N [SIZE=102400] [get|set]
import socket
import sys
import time

port = int(sys.argv[1])
n = int(sys.argv[2])
size = int(sys.argv[3]) if len(sys.argv) > 3 else 102400
mode = sys.argv[4] if len(sys.argv) > 4 else 'get'
s = socket.create_connection(('127.0.0.1', port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
val = b'v' * size
setreq = b'set big 0 0 %d\r\n' % size + val + b'\r\n'
s.sendall(setreq)
assert s.recv(100) == b'STORED\r\n'
want = b'VALUE big 0 %d\r\n' % size + val + b'\r\nEND\r\n'
buf = bytearray(len(want) + 16)
t = time.time()
for _ in range(n):
    if mode == 'set':
        s.sendall(setreq)
        r = s.recv(100)
        assert r == b'STORED\r\n', r
        continue
    s.sendall(b'get big\r\n')
    got = 0
    mv = memoryview(buf)
    while got < len(want):
        k = s.recv_into(mv[got:])
        assert k > 0
        got += k
    assert bytes(buf[:got]) == want
print('%.1f us/op wall' % ((time.time() - t) / n * 1e6))
