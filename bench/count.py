"""Counts the AWS calls in a moto recording (one JSON request a line): writes and reads.

A read is an action starting with Describe, Get, List or Head (S3: GET or HEAD), as in the
tests' recording proxy; everything else is a write. Prints {"writes": N, "reads": N, ...}.
"""
import base64
import json
import sys
from urllib.parse import parse_qs, urlparse

READ = ("Describe", "Get", "List", "Head")


def action(req):
    target = {k.lower(): v for k, v in req.get("headers", {}).items()}.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    body = req.get("body") or ""
    if req.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    for text in (body, urlparse(req["url"]).query):
        found = parse_qs(text).get("Action")
        if found:
            return found[0]
    # S3's REST API: the method says it.
    return {"GET": "GetS3", "HEAD": "HeadS3"}.get(req["method"], "S3" + req["method"])


def main(path):
    writes, reads = {}, {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            a = action(json.loads(line))
            bucket = reads if a.startswith(READ) else writes
            bucket[a] = bucket.get(a, 0) + 1
    print(json.dumps({"writes": sum(writes.values()), "reads": sum(reads.values()),
                      "write_calls": writes, "read_calls": reads}))


if __name__ == "__main__":
    main(sys.argv[1])
