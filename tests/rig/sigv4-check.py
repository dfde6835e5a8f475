#!/usr/bin/env python3
"""A stand-in for IMDSv2 and S3 that checks each S3 request's SigV4 signature the way AWS
computes it (botocore's S3SigV4Auth, with the request's own time), for the host scripts that
sign requests themselves (bootstrap/aws-py.sh). moto does not check signatures.

    sigv4-check.py PORT_FILE LOG_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE). Credentials: AKIDTEST / a secret
made per run / token "tok". Each PUT is answered 200 when the signature matches, 403
SignatureDoesNotMatch otherwise; LOG_FILE gets one JSON line per request: method, path,
signed headers, ok, the body's sha256.
"""
import hashlib
import json
import os
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SECRET = secrets.token_hex(20)
CREDS = Credentials("AKIDTEST", SECRET, "tok")
REGION = os.environ.get("SIGV4_REGION", "us-east-1")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        if self.path == "/latest/api/token":
            return self.reply(200, b"token-1")
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        auth = self.headers.get("Authorization", "")
        signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";") if "SignedHeaders=" in auth else []
        url = "http://%s%s" % (self.headers["Host"], self.path)
        req = AWSRequest(method="PUT", url=url, data=body,
                         headers={k: self.headers[k] for k in signed if k != "host" and k in self.headers})
        req.context["timestamp"] = self.headers.get("x-amz-date", "")
        signer = S3SigV4Auth(CREDS, "s3", REGION)
        # Sign exactly the headers the client signed (botocore would add its own otherwise).
        signer.headers_to_sign = lambda r: _only(r, signed)
        signer.add_auth(req)
        ok = req.headers.get("Authorization") == auth and \
            self.headers.get("x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps({"method": "PUT", "path": self.path, "signed": signed, "ok": ok,
                                "sha256": hashlib.sha256(body).hexdigest(),
                                "headers": {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-amz-") and k.lower() != "x-amz-security-token"}}) + "\n")
        if ok:
            return self.reply(200)
        return self.reply(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>")

    def do_GET(self):
        base = "/latest/meta-data/iam/security-credentials/"
        if self.headers.get("X-aws-ec2-metadata-token") != "token-1":
            return self.reply(401)
        if self.path == base:
            return self.reply(200, b"poscloud-role\n")
        if self.path == base + "poscloud-role":
            return self.reply(200, json.dumps({"AccessKeyId": "AKIDTEST", "SecretAccessKey": SECRET,
                                               "Token": "tok"}).encode())
        return self.reply(404)


def _only(request, names):
    from botocore.awsrequest import HTTPHeaders
    out = HTTPHeaders()
    for name in names:
        if name == "host":
            out["host"] = request.headers.get("host") or request.url.split("://", 1)[1].split("/", 1)[0]
        else:
            out[name] = request.headers[name]
    return out


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".new", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(sys.argv[1] + ".new", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
