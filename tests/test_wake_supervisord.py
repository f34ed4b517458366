"""deploy/release/wake_supervisord.py: start.sh's nudge that has supervisord start gunicorn
without waiting out its main loop's first 1 s poll."""

import importlib.util
import socket
import threading
import time

from www.project import BASE_DIR

spec = importlib.util.spec_from_file_location(
    "wake_supervisord", BASE_DIR / "deploy" / "release" / "wake_supervisord.py"
)
wake_supervisord = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wake_supervisord)


def test_it_connects_once_the_control_socket_appears(tmp_path):
    path = str(tmp_path / "supervisor.sock")
    accepted = threading.Event()

    def supervisord_late():
        time.sleep(0.3)  # supervisord binds its socket a moment after start.sh starts it
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path)
            server.listen(1)
            server.settimeout(5)
            conn, _ = server.accept()
            conn.close()
            accepted.set()

    server = threading.Thread(target=supervisord_late)
    server.start()
    assert wake_supervisord.wake(path, timeout=5) is True
    server.join(timeout=10)
    assert accepted.is_set()


def test_it_gives_up_when_nothing_listens(tmp_path):
    # start.sh goes on either way: supervisord then starts gunicorn after its first poll
    assert wake_supervisord.wake(str(tmp_path / "absent.sock"), timeout=0.2) is False
