# shellcheck shell=bash
# AWS calls a host script makes itself, with the instance role: IMDSv2 credentials and a
# SigV4-signed request, made by the host's python 2.7 or 3.6 (CentOS 7 has no AWS CLI).
# Sent between lib.sh and the scripts that call AWS (vpn.sh's key, backup.sh's upload).

# aws_py MAIN: runs python with the helpers below, then MAIN (python source that calls them).
# Everything reaches python through the environment and stdin, nothing through argv. IMDS
# and the service endpoints can be moved only on a test host (POSCLOUD_ROOT set):
# POSCLOUD_IMDS_URL, POSCLOUD_SSM_URL, POSCLOUD_S3_URL (path-style, ending in /).
aws_py() {
  local py imds=http://169.254.169.254 ssm_url="" s3_url=""
  py=$(python_bin) || {
    echo "${me:-poscloud}: no python on this host to call AWS with" >&2
    return 1
  }
  if [[ -n ${POSCLOUD_ROOT:-} ]]; then
    imds=${POSCLOUD_IMDS_URL:-$imds}
    ssm_url=${POSCLOUD_SSM_URL:-}
    s3_url=${POSCLOUD_S3_URL:-}
  fi
  { cat <<'PY'
import datetime, hashlib, hmac, json, os, sys
try:
    from urllib.request import Request, urlopen
    from urllib.error import HTTPError
    from urllib.parse import quote
except ImportError:
    from urllib2 import Request, urlopen, HTTPError
    from urllib import quote

def fetch(url, headers, data=None, method=None, timeout=30):
    r = Request(url, data=data, headers=headers)
    if method:
        r.get_method = lambda: method
    return urlopen(r, timeout=timeout).read().decode("utf-8")

def credentials():
    imds = os.environ["AWS_PY_IMDS"]
    token = fetch(imds + "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"}, b"", "PUT")
    base = imds + "/latest/meta-data/iam/security-credentials/"
    role = fetch(base, {"X-aws-ec2-metadata-token": token}).split("\n")[0].strip()
    return json.loads(fetch(base + role, {"X-aws-ec2-metadata-token": token}))

def mac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

def signed(cred, method, url, service, region, headers, payload_sha256):
    """The headers of a SigV4-signed request (names in lowercase), Host left to urllib.
    The URL's path must be encoded already (S3 signs it as sent)."""
    now = datetime.datetime.utcnow()
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    rest = url.split("://", 1)[1]
    host, path = (rest.split("/", 1) + [""])[:2]
    h = dict(headers)
    h.update({"host": host, "x-amz-date": stamp, "x-amz-security-token": cred["Token"]})
    names = sorted(h)
    signed_names = ";".join(names)
    canonical = "\n".join([method, "/" + path.split("?", 1)[0], "",
                           "".join("%s:%s\n" % (k, h[k].strip()) for k in names),
                           signed_names, payload_sha256])
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = mac(("AWS4" + cred["SecretAccessKey"]).encode("utf-8"), day)
    for part in (region, service, "aws4_request"):
        key = mac(key, part)
    h["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        cred["AccessKeyId"], scope, signed_names,
        hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest())
    del h["host"]  # urllib sends the same Host itself
    return h

def ssm_call(target, body):
    """An SSM JSON call (e.g. "GetParameter"), its answer as a dict."""
    region = os.environ["AWS_PY_REGION"]
    endpoint = os.environ.get("AWS_PY_SSM") or "https://ssm.%s.amazonaws.com/" % region
    data = json.dumps(body).encode("utf-8")
    h = signed(credentials(), "POST", endpoint, "ssm", region,
               {"content-type": "application/x-amz-json-1.1", "x-amz-target": "AmazonSSM." + target},
               hashlib.sha256(data).hexdigest())
    return json.loads(fetch(endpoint, h, data, "POST"))

def s3_put(cred, bucket, key, path, sha256, headers):
    """PUTs the file at path as bucket/key (one request: up to 5 GB)."""
    region = os.environ["AWS_PY_REGION"]
    base = os.environ.get("AWS_PY_S3")
    ekey = quote(key, safe="/-_.~")
    url = base + bucket + "/" + ekey if base else "https://%s.s3.%s.amazonaws.com/%s" % (bucket, region, ekey)
    h = signed(cred, "PUT", url, "s3", region, dict(headers, **{"x-amz-content-sha256": sha256}), sha256)
    h["content-length"] = str(os.path.getsize(path))
    with open(path, "rb") as f:
        r = Request(url, data=f, headers=h)
        r.get_method = lambda: "PUT"
        urlopen(r, timeout=300).read()

def http_reason(e):
    """An HTTP error in words that quote nothing of the request: status and AWS's code."""
    code = ""
    try:
        body = e.read(65536).decode("utf-8", "replace")
        for tag in ("<Code>", '"__type":'):
            if tag in body:
                code = body.split(tag, 1)[1].split("<", 1)[0].strip(' "').split('"', 1)[0][:64]
    except Exception:
        pass
    return "HTTP %s%s" % (e.code, ", " + code if code else "")
PY
    cat; } | AWS_PY_IMDS=$imds AWS_PY_SSM=$ssm_url AWS_PY_S3=$s3_url AWS_PY_REGION=${REGION:-} "$py" -
}
