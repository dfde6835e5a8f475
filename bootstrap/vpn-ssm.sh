# shellcheck shell=bash
# vpn.sh's one AWS call: a location's key read from SSM with the instance role (aws-py.sh's
# SigV4-signed GetParameter). Sent between lib.sh, aws-py.sh and vpn.sh (src/remote/mod.rs);
# uses vpn.sh's PSK_PARAM and REGION.
# shellcheck disable=SC2154 # those are set by vpn.sh

# Prints the SecureString PSK_PARAM (in REGION) read with the instance role's credentials.
ssm_get() {
  PARAM=$PSK_PARAM aws_py <<'PY'
try:
    sys.stdout.write(ssm_call("GetParameter", {"Name": os.environ["PARAM"], "WithDecryption": True})["Parameter"]["Value"])
except Exception as e:  # the kind of error only: a message could quote what was read
    sys.stderr.write("%s%s\n" % (type(e).__name__, " (HTTP %s)" % e.code if hasattr(e, "code") else ""))
    sys.exit(1)
PY
}
