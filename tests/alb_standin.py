"""The load balancer's data plane for the fleet roll test: HAProxy from Debian's packages, its
backends following the target group's registrations in moto.

moto has the ALB's control plane only: it records registrations and reports a registered
running instance healthy at once, and forwards no request. This plays the rest as the ALB
does it:
- a target gets requests only while it is registered and passes a health check of the load
  balancer's own (GET /health, every 0.5 s, 2 to rise and 2 to fall): the target group's;
- a target deregistered in moto goes into maintenance: it gets no new request, and the
  requests in flight on it finish (the ALB's draining);
- a failed connection is not retried on another target (`retries 0`): a client of the ALB
  would see it as a 502, so here it is a 503 the load counts as a failure;
- X-Forwarded-For and X-Forwarded-Proto: https are set, as the ALB's HTTPS listener sets them.

A thread follows the registrations (describe_target_health every 0.2 s) and records, at each
change, how many of the instances were registered: the test's view of how many were out of
service at once. Everything is on loopback; stop() ends HAProxy by the process it started.
"""

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import boto3

from tests.servers import free_port, stop_process

CONFIG = """\
global
    stats socket {admin} mode 600 level admin
    maxconn 1000

defaults
    mode http
    retries 0
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s

frontend site
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend targets

backend targets
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host {host}
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2 check
{servers}
"""
FOLLOW_EVERY = 0.2  # seconds between two looks at the target group


class LoadBalancerStandIn:
    def __init__(self, target_group_arn, targets, *, host):
        """targets: {instance id: the port its nginx listens on}; host: what the health
        check names as Host."""
        self.target_group_arn = target_group_arn
        self.targets = dict(targets)
        self.host = host
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alb-standin-"))
        self.admin = self.dir / "admin.sock"
        self.registered = {}  # instance id -> registered, as last seen in moto
        self.history = []  # (time.monotonic(), number of targets registered), at each change
        self.process = None
        self._stop = threading.Event()
        self._follower = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        servers = "\n".join(
            f"    server {instance} 127.0.0.1:{port}" for instance, port in self.targets.items()
        )
        config = self.dir / "haproxy.cfg"
        config.write_text(
            CONFIG.format(admin=self.admin, port=self.port, host=self.host, servers=servers)
        )
        check = subprocess.run(["haproxy", "-c", "-f", config], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.dir / "haproxy.log", "wb") as log:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", config], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not self.admin.exists():
            assert self.process.poll() is None, (self.dir / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "HAProxy made no admin socket in 10 s"
            time.sleep(0.05)
        self.follow_once()
        self._follower = threading.Thread(target=self._follow, daemon=True)
        self._follower.start()
        return self

    def stop(self):
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=10)
        if self.process is not None:
            stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the control plane, followed -----------------------------------------------------

    def _follow(self):
        elbv2 = boto3.client("elbv2")
        while not self._stop.wait(FOLLOW_EVERY):
            self.follow_once(elbv2)

    def follow_once(self, elbv2=None):
        elbv2 = elbv2 or boto3.client("elbv2")
        found = elbv2.describe_target_health(TargetGroupArn=self.target_group_arn)
        registered = {
            t["Target"]["Id"]
            for t in found["TargetHealthDescriptions"]
            if t["TargetHealth"]["State"] not in ("unused", "draining")
        }
        now = {instance: instance in registered for instance in self.targets}
        if now == self.registered:
            return
        for instance, is_registered in now.items():
            if self.registered.get(instance) != is_registered:
                server = f"set server targets/{instance}"
                if is_registered:  # in service once its health check passes ("initial")
                    self.admin_command(f"{server} state ready; {server} health down")
                else:
                    self.admin_command(f"{server} state maint")
        self.registered = now
        self.history.append((time.monotonic(), sum(now.values())))

    # --- the data plane, asked ----------------------------------------------------------

    def admin_command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(self.admin))
            conn.sendall(line.encode() + b"\n")
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        return answer.decode()

    def serving(self):
        """The instances HAProxy sends requests to now: registered, and passing its check."""
        lines = self.admin_command("show servers state targets").splitlines()
        fields = lines[1].lstrip("# ").split()
        up = []
        for line in lines[2:]:
            values = dict(zip(fields, line.split(), strict=False))
            # srv_op_state 2: running; srv_admin_state 0: not in maintenance
            if values.get("srv_op_state") == "2" and values.get("srv_admin_state") == "0":
                up.append(values["srv_name"])
        return sorted(up)

    def describe(self):
        """What HAProxy makes of its targets, and its log's end: for a failed assertion."""
        log = (self.dir / "haproxy.log").read_text(errors="replace")[-3000:]
        return f"{self.admin_command('show servers state targets')}\n{log}"

    def wait_serving(self, count, timeout=120):
        deadline = time.monotonic() + timeout
        while len(self.serving()) < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def fewest_registered(self, since):
        """The fewest targets registered at once from time `since` (monotonic) on."""
        before = [count for at, count in self.history if at <= since]
        during = [count for at, count in self.history if at > since]
        return min(before[-1:] + during)
