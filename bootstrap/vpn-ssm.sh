# shellcheck shell=bash
# vpn.sh's one AWS call: a location's key read from SSM with the instance role (IMDSv2
# credentials, a SigV4-signed GetParameter made by the host's python 2.7 or 3.6: CentOS 7
# has no AWS CLI). Sent between lib.sh and vpn.sh (src/remote/mod.rs); uses vpn.sh's
# PSK_PARAM and REGION.
# shellcheck disable=SC2154 # those are set by vpn.sh

# Prints the SecureString PSK_PARAM (in REGION) read with the instance role's credentials.
# Everything goes through the environment and stdin, nothing through argv. The endpoints
# can be moved only on a test host (POSCLOUD_ROOT set).
ssm_get() {
  local py imds=http://169.254.169.254 endpoint=""
  py=$(python_bin) || {
    echo "vpn: no python to read SSM with" >&2
    return 1
  }
  if [[ -n ${POSCLOUD_ROOT:-} ]]; then
    imds=${POSCLOUD_IMDS_URL:-$imds}
    endpoint=${POSCLOUD_SSM_URL:-}
  fi
  PARAM=$PSK_PARAM AWSREGION=$REGION IMDS=$imds ENDPOINT=$endpoint "$py" - <<'PY'
import datetime, hashlib, hmac, json, os, sys
try:
    from urllib.request import Request, urlopen
except ImportError:
    from urllib2 import Request, urlopen

def fetch(url, headers, data=None, method=None):
    r = Request(url, data=data, headers=headers)
    if method:
        r.get_method = lambda: method
    return urlopen(r, timeout=15).read().decode("utf-8")

def mac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

def main():
    imds, region = os.environ["IMDS"], os.environ["AWSREGION"]
    endpoint = os.environ.get("ENDPOINT") or "https://ssm.%s.amazonaws.com/" % region
    token = fetch(imds + "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"}, b"", "PUT")
    base = imds + "/latest/meta-data/iam/security-credentials/"
    role = fetch(base, {"X-aws-ec2-metadata-token": token}).split("\n")[0].strip()
    cred = json.loads(fetch(base + role, {"X-aws-ec2-metadata-token": token}))
    body = json.dumps({"Name": os.environ["PARAM"], "WithDecryption": True}).encode("utf-8")
    now = datetime.datetime.utcnow()
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": endpoint.split("://", 1)[1].split("/", 1)[0],
        "x-amz-date": stamp,
        "x-amz-security-token": cred["Token"],
        "x-amz-target": "AmazonSSM.GetParameter",
    }
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join(["POST", "/", "", "".join("%s:%s\n" % (k, headers[k]) for k in names),
                           signed, hashlib.sha256(body).hexdigest()])
    scope = "%s/%s/ssm/aws4_request" % (day, region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = mac(("AWS4" + cred["SecretAccessKey"]).encode("utf-8"), day)
    for part in (region, "ssm", "aws4_request"):
        key = mac(key, part)
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        cred["AccessKeyId"], scope, signed,
        hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest())
    del headers["host"]  # urllib sends the same Host itself
    sys.stdout.write(json.loads(fetch(endpoint, headers, body, "POST"))["Parameter"]["Value"])

try:
    main()
except Exception as e:  # the kind of error only: a message could quote what was read
    sys.stderr.write("%s%s\n" % (type(e).__name__, " (HTTP %s)" % e.code if hasattr(e, "code") else ""))
    sys.exit(1)
PY
}
