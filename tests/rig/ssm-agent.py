#!/usr/bin/env python3
"""A stand-in for the SSM agent of one test host. tests/rig/testhost.sh starts it inside the
host's network namespace (`testhost.sh agent-start`); the emulator (emulator.py) hands it
commands through HOST_DIR/ssm/inbox and reads what it leaves in HOST_DIR/ssm/work.

    ssm-agent.py HOST_DIR

It runs an AWS-RunShellScript command the way the agent does on Linux: the `commands` lines
written to _script.sh in the command's orchestration directory
(ROOT/var/lib/amazon/ssm/INSTANCE/document/orchestration/COMMAND/awsrunShellScript/
0.awsrunShellScript), run by `sh -c` that file, as root, in that directory (or
workingDirectory), with the agent's own environment (the one it was started with, which has no
HOME, as a systemd service has none) plus AWS_SSM_INSTANCE_ID and AWS_SSM_REGION_NAME. Each
command runs in its own process group; past executionTimeout the group is killed. Commands run
at the same time, each in a thread, as the agent's workers do.

What it cannot be: the real agent (no ec2messages, no document plugins other than
runShellScript, no cancel, no reboot handling, no upload by the instance role: the emulator
writes the output to S3).
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time

HOST_DIR = sys.argv[1]
SPOOL = os.path.join(HOST_DIR, "ssm")
ROOT = os.environ.get("POSCLOUD_ROOT", "/")
POLL = 0.1


def stamp():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def run(job, work):
    cmd = job["command_id"]
    instance = job["instance_id"]
    orch = os.path.join(ROOT.rstrip("/"), "var/lib/amazon/ssm", instance, "document",
                        "orchestration", cmd, "awsrunShellScript", "0.awsrunShellScript")
    os.makedirs(orch, exist_ok=True)
    script = os.path.join(orch, "_script.sh")
    with open(script, "w") as f:
        f.write("\n".join(job["commands"]) + "\n")
    os.chmod(script, 0o700)
    env = dict(os.environ)
    env["AWS_SSM_INSTANCE_ID"] = instance
    env["AWS_SSM_REGION_NAME"] = job["region"]
    cwd = job.get("working_directory") or orch
    started = stamp()
    write_json(os.path.join(work, "started.json"), {"at": started})
    status, details = "Success", "Success"
    with open(os.path.join(work, "stdout"), "wb") as out, \
            open(os.path.join(work, "stderr"), "wb") as err:
        try:
            p = subprocess.Popen(["sh", "-c", script], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, start_new_session=True)
        except OSError as e:
            err.write(f"failed to run commands: {e}\n".encode())
            rc = 1
        else:
            try:
                rc = p.wait(timeout=job["execution_timeout"])
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                rc = -1
                status, details = "TimedOut", "ExecutionTimedOut"
            else:
                if rc < 0:  # killed by a signal
                    rc = 128 - rc
    if status == "Success" and rc != 0:
        status, details = "Failed", "Failed"
    for stream in ("stdout", "stderr"):
        with open(os.path.join(work, stream), "rb") as src, \
                open(os.path.join(orch, stream), "wb") as dst:
            dst.write(src.read())
    write_json(os.path.join(work, "result.json"),
               {"status": status, "details": details, "rc": rc, "started": started,
                "ended": stamp()})


def main():
    inbox = os.path.join(SPOOL, "inbox")
    os.makedirs(inbox, exist_ok=True)
    os.makedirs(os.path.join(SPOOL, "work"), exist_ok=True)
    write_json(os.path.join(SPOOL, "registration.json"),
               {"pid": os.getpid(), "at": stamp(), "agent_version": "3.3.0.0",
                "hostname": os.uname().nodename})
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        for name in sorted(os.listdir(inbox)):
            if not name.endswith(".json") or name.startswith("."):
                continue
            cmd = name[:-5]
            work = os.path.join(SPOOL, "work", cmd)
            os.makedirs(work, exist_ok=True)
            try:  # taking it: the emulator may withdraw it (delivery timeout) at the same time
                os.rename(os.path.join(inbox, name), os.path.join(work, "job.json"))
            except OSError:
                os.rmdir(work)
                continue
            with open(os.path.join(work, "job.json")) as f:
                job = json.load(f)
            threading.Thread(target=run, args=(job, work), daemon=True).start()
        time.sleep(POLL)


if __name__ == "__main__":
    main()
