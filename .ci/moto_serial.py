"""moto's S3 server, one request at a time.

moto checks a conditional PUT's If-Match / If-None-Match and then writes, without a lock between
the two: with its threaded server, two PUTs conditioned on the same ETag can both succeed, which
real S3 never allows (the collection tests of 4 processes x 250 updates then lose an update now
and then). A lock around each request makes every check-and-write atomic, as S3's are; the
server stays threaded, so keep-alive connections do not block one another.

Usage: python3 .ci/moto_serial.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

LOCK = threading.Lock()
APP = DomainDispatcherApplication(create_backend_app)


def serial(environ, start_response):
    with LOCK:
        # The whole response is made under the lock (moto's are small and in memory).
        return list(APP(environ, start_response))


if __name__ == "__main__":
    run_simple(sys.argv[1], int(sys.argv[2]), serial, threaded=True)
