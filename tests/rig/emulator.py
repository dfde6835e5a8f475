#!/usr/bin/env python3
"""The AWS emulator of the tests and the sandbox: moto's server, extended in-process so that
SSM Run Command really runs on the test host that stands for an instance.

    emulator.py -H ADDRESS -p PORT [--hosts DIR] [--aws-model FILE]

--aws-model FILE: AWS's behaviour in front of moto (eventual consistency, instance state
times, dependency errors, IAM propagation, ClientToken): see aws_model.py.

--hosts DIR (or POSCLOUD_RIG_HOSTS) is the registry of test hosts: each `DIR/*.json` binds one
test host to the instances of one stack:

    {"host_dir": "/tmp/…", "shop": "12345678", "env": "qa"}

An instance is bound to a host when its poscloud:shop and poscloud:env tags match. What the
extension answers for a bound instance (everything else is moto's own):

- SendCommand (AWS-RunShellScript): hands the command to the host's agent stand-in
  (ssm-agent.py) through HOST_DIR/ssm/inbox. Refused as AWS refuses it: InvalidInstanceId when
  no agent ever registered for the instance, InvalidParameters when `commands` is missing,
  ValidationException for a Comment over 100 characters or Parameters over PARAMETERS_LIMIT.
- GetCommandInvocation / ListCommandInvocations: Pending → InProgress → Success, Failed,
  TimedOut (ExecutionTimedOut) or TimedOut (DeliveryTimedOut: the agent did not take the command
  within TimeoutSeconds); ResponseCode; output cut at 24 000 characters (GetCommandInvocation)
  or 2 500 (ListCommandInvocations' plugin Output), empty until the command ends. The whole
  output is written to OutputS3BucketName under the agent's key layout before the end is shown.
- DescribeInstanceInformation: a bound instance is listed once its agent registered, Online
  while the agent process runs, ConnectionLost after.
- GetConsoleOutput: HOST_DIR/console.log (written by the rig when the host's "boot" ends),
  base64-encoded as EC2 returns it; empty before.

- Service Quotas (every region): GetServiceQuota answers the account's applied value where
  the AWS model file sets one (`"quotas": {"vpc/L-F678F1CE": 20}`, or
  `"REGION/vpc/L-F678F1CE"` for one region) and NoSuchResourceException otherwise, as AWS does
  for a quota never changed; GetAWSDefaultServiceQuota answers the default (VPCs per Region 5,
  EC2-VPC Elastic IPs 5); RequestServiceQuotaIncrease records a request (PENDING, then
  CASE_OPENED when listed) and refuses a second open one of the same quota
  (ResourceAlreadyExistsException); ListRequestedServiceQuotaChangeHistoryByQuota lists them.
  No request is ever decided (approval and support cases are AWS's people).

Unbound instances get moto's behaviour except SendCommand, which AWS refuses for an instance
without a registered agent (InvalidInstanceId), and DescribeInstanceInformation, which lists
them not at all.
"""

import argparse
import base64
import datetime
import glob
import json
import os
import sys
import threading
import time

from moto import server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aws_model  # noqa: E402  (next to this file)
from moto.core.exceptions import JsonRESTError, ServiceException
from moto.core.responses import ActionResult
from moto.ec2.models import amis as ec2_amis
from moto.ec2.models import ec2_backends
from moto.ec2.responses import general as ec2_general
from moto.s3.models import s3_backends
from moto.servicequotas import responses as sq_responses
from moto.ssm import models as ssm_models
from moto.ssm import responses as ssm_responses

# AWS documents no size for SendCommand's Parameters. The only documented size around it is the
# 64 KB of an SSM document's content, into which the parameters are substituted; the stand-in
# refuses more than that (in UTF-8 bytes of all values), and poscloud stays far below it.
PARAMETERS_LIMIT = 64 * 1024
API_OUTPUT_LIMIT = 24000
LIST_OUTPUT_LIMIT = 2500
PLUGIN = "aws:runShellScript"
PLUGIN_DIR = "awsrunShellScript"

HOSTS = os.environ.get("POSCLOUD_RIG_HOSTS", "")
LOCK = threading.Lock()
UPLOADED = set()


class SsmError(ServiceException):
    pass


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def read(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return default


def read_json(path):
    data = read(path)
    return json.loads(data) if data else None


def instance_tags(account, region, instance_id):
    try:
        instance = ec2_backends[account][region].get_instance(instance_id)
    except Exception:  # moto raises its own not-found error: unbound
        return None
    return {t["key"]: t["value"] for t in instance.get_tags()}


def host_for(account, region, instance_id):
    """The test host bound to this instance, as (host_dir, binding), or None."""
    if not HOSTS:
        return None
    tags = instance_tags(account, region, instance_id)
    if tags is None:
        return None
    for path in sorted(glob.glob(os.path.join(HOSTS, "*.json"))):
        b = read_json(path) or {}
        if tags.get("poscloud:shop") == b.get("shop") and tags.get("poscloud:env") == b.get("env"):
            return b["host_dir"], b
    return None


def agent_state(host_dir):
    """(registered, online): the agent wrote its registration, and its PID still runs."""
    reg = read_json(os.path.join(host_dir, "ssm", "registration.json"))
    if not reg:
        return False, False
    pid = reg.get("pid")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            online = b"ssm-agent.py" in f.read()
    except OSError:
        online = False
    return True, online


def work_dir(host_dir, command_id):
    return os.path.join(host_dir, "ssm", "work", command_id)


def cut(data, limit):
    return data.decode("utf-8", "replace")[:limit]


class Invocation:
    """One command on one bound instance, read from the agent's files."""

    def __init__(self, command, instance_id, host_dir):
        self.c = command
        self.instance_id = instance_id
        self.host_dir = host_dir
        self.work = work_dir(host_dir, command.command_id)
        self.inbox = os.path.join(host_dir, "ssm", "inbox", command.command_id + ".json")
        self.expired = os.path.join(host_dir, "ssm", "expired", command.command_id + ".json")

    def state(self):
        """(status, details, response_code, started, ended, stdout, stderr)."""
        result = read_json(os.path.join(self.work, "result.json"))
        if result:
            out = read(os.path.join(self.work, "stdout"), b"")
            err = read(os.path.join(self.work, "stderr"), b"")
            self.upload(out, err)
            return (result["status"], result["details"], result["rc"], result["started"],
                    result["ended"], out, err)
        started = read_json(os.path.join(self.work, "started.json"))
        if started:
            return ("InProgress", "InProgress", -1, started["at"], None, b"", b"")
        if os.path.exists(self.expired):
            return ("TimedOut", "DeliveryTimedOut", -1, None, None, b"", b"")
        deadline = self.c.requested_date_time.timestamp() + self.c.timeout_seconds
        if time.time() > deadline:
            # The agent never took it: withdraw it (whoever renames first wins).
            try:
                os.makedirs(os.path.dirname(self.expired), exist_ok=True)
                os.rename(self.inbox, self.expired)
                return ("TimedOut", "DeliveryTimedOut", -1, None, None, b"", b"")
            except OSError:
                return self.state()
        return ("Pending", "Pending", -1, None, None, b"", b"")

    def key(self, stream):
        prefix = self.c.output_s3_key_prefix.rstrip("/")
        parts = [prefix] if prefix else []
        parts += [self.c.command_id, self.instance_id, PLUGIN_DIR, "0." + PLUGIN_DIR, stream]
        return "/".join(parts)

    def url(self, stream):
        if not self.c.output_s3_bucket_name:
            return ""
        return f"https://s3.amazonaws.com/{self.c.output_s3_bucket_name}/{self.key(stream)}"

    def upload(self, out, err):
        """The agent uploads the whole output before it reports the end; so does this."""
        bucket = self.c.output_s3_bucket_name
        if not bucket:
            return
        with LOCK:
            if (self.c.command_id, self.instance_id) in UPLOADED:
                return
            s3 = s3_backends[self.c.account_id]["aws"]
            try:
                s3.get_bucket(bucket)
            except Exception:  # the agent logs an upload error; the command still ends
                UPLOADED.add((self.c.command_id, self.instance_id))
                return
            s3.put_object(bucket, self.key("stdout"), out)
            if err:
                s3.put_object(bucket, self.key("stderr"), err)
            UPLOADED.add((self.c.command_id, self.instance_id))

    def get_response(self):
        status, details, rc, started, ended, out, err = self.state()
        return {
            "CommandId": self.c.command_id,
            "InstanceId": self.instance_id,
            "Comment": self.c.comment,
            "DocumentName": self.c.document_name,
            "DocumentVersion": "$DEFAULT",
            "PluginName": PLUGIN,
            "ResponseCode": rc,
            "ExecutionStartDateTime": started or "",
            "ExecutionElapsedTime": "",
            "ExecutionEndDateTime": ended or "",
            "Status": status,
            "StatusDetails": details,
            "StandardOutputContent": cut(out, API_OUTPUT_LIMIT),
            "StandardOutputUrl": self.url("stdout"),
            "StandardErrorContent": cut(err, API_OUTPUT_LIMIT),
            "StandardErrorUrl": self.url("stderr"),
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }

    def list_response(self, details):
        status, sdetails, rc, started, ended, out, _ = self.state()
        r = {
            "CommandId": self.c.command_id,
            "InstanceId": self.instance_id,
            "InstanceName": "",
            "Comment": self.c.comment,
            "DocumentName": self.c.document_name,
            "DocumentVersion": "$DEFAULT",
            "RequestedDateTime": self.c.requested_date_time,
            "Status": status,
            "StatusDetails": sdetails,
            "TraceOutput": "",
            "StandardOutputUrl": self.url("stdout"),
            "StandardErrorUrl": self.url("stderr"),
            "CommandPlugins": [],
            "ServiceRole": "",
        }
        if details:
            r["CommandPlugins"] = [{
                "Name": PLUGIN,
                "Status": status,
                "StatusDetails": sdetails,
                "ResponseCode": rc,
                "ResponseStartDateTime": started,
                "ResponseFinishDateTime": ended,
                "Output": cut(out, LIST_OUTPUT_LIMIT),
                "StandardOutputUrl": self.url("stdout"),
                "StandardErrorUrl": self.url("stderr"),
                "OutputS3Region": self.c.output_s3_region or self.c.backend_region,
                "OutputS3BucketName": self.c.output_s3_bucket_name,
                "OutputS3KeyPrefix": self.c.output_s3_key_prefix,
            }]
            r["CommandPlugins"] = [{k: v for k, v in p.items() if v is not None}
                                   for p in r["CommandPlugins"]]
        return r


def invocations(command):
    out = []
    for instance_id in command.instance_ids:
        bound = host_for(command.account_id, command.backend_region, instance_id)
        if bound:
            out.append(Invocation(command, instance_id, bound[0]))
    return out


# --- SSM -------------------------------------------------------------------------------------

_original_send_command = ssm_responses.SimpleSystemManagerResponse.send_command


def send_command(self):
    document = self._get_param("DocumentName")
    if document != "AWS-RunShellScript":
        return _original_send_command(self)
    params = self._get_param("Parameters", {}) or {}
    comment = self._get_param("Comment", "") or ""
    if len(comment) > 100:
        raise SsmError("ValidationException",
                       "1 validation error detected: Value at 'comment' failed to satisfy "
                       "constraint: Member must have length less than or equal to 100")
    size = sum(len(v.encode("utf-8")) for vs in params.values() for v in vs)
    if size > PARAMETERS_LIMIT:
        raise SsmError("ValidationException",
                       f"Parameters are {size} bytes; the stand-in allows {PARAMETERS_LIMIT}")
    commands = params.get("commands")
    if not commands:
        raise SsmError("InvalidParameters", "Parameter \"commands\" is required.")
    timeout = params.get("executionTimeout", ["3600"])[0]
    if not timeout.isdigit() or not 1 <= int(timeout) <= 172800:
        raise SsmError("InvalidParameters", f"executionTimeout {timeout!r} is not valid")
    delivery = self._get_int_param("TimeoutSeconds")
    if delivery is not None and not 30 <= delivery <= 2592000:
        raise SsmError("ValidationException", "TimeoutSeconds must be between 30 and 2592000")
    bound = []
    for instance_id in self._get_param("InstanceIds", []) or []:
        b = host_for(self.current_account, self.region, instance_id)
        registered = b is not None and agent_state(b[0])[0]
        if not registered:
            raise SsmError("InvalidInstanceId", "Instances not in a valid state for account")
        bound.append((instance_id, b[0]))
    result = _original_send_command(self)
    command = self.ssm_backend.get_command_by_id(result.result["Command"]["CommandId"])
    job = {
        "command_id": command.command_id,
        "commands": commands,
        "execution_timeout": int(timeout),
        "working_directory": (params.get("workingDirectory") or [""])[0],
        "comment": comment,
        "region": self.region,
    }
    for instance_id, host_dir in bound:
        inbox = os.path.join(host_dir, "ssm", "inbox")
        os.makedirs(inbox, exist_ok=True)
        tmp = os.path.join(inbox, f".{command.command_id}.tmp")
        with open(tmp, "w") as f:
            json.dump(dict(job, instance_id=instance_id), f)
        os.rename(tmp, os.path.join(inbox, command.command_id + ".json"))
    return ActionResult({"Command": command_response(command)})


def command_response(command):
    r = _original_response_object(command)
    invs = invocations(command)
    if not invs:
        return r
    # Each invocation's state read once: (status, details), from the agent's files.
    read = [i.state()[:2] for i in invs]
    states = [status for status, _ in read]
    terminal = [s for s in states if s not in ("Pending", "InProgress")]
    r["CompletedCount"] = len(terminal)
    r["ErrorCount"] = sum(1 for s in terminal if s != "Success")
    r["DeliveryTimedOutCount"] = sum(1 for _, d in read if d == "DeliveryTimedOut")
    if len(terminal) < len(states):
        r["Status"] = "InProgress" if "InProgress" in states else "Pending"
    else:
        r["Status"] = "Success" if all(s == "Success" for s in states) else states[0]
    r["StatusDetails"] = r["Status"]
    return r


_original_response_object = ssm_models.Command.response_object


def get_command_invocation(self):
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    try:
        command = self.ssm_backend.get_command_by_id(command_id)
    except Exception:
        raise SsmError("InvalidCommandId", "Invalid command id.")
    for inv in invocations(command):
        if inv.instance_id == instance_id:
            return ActionResult(inv.get_response())
    if instance_id in command.instance_ids:
        return ActionResult(command.get_invocation(instance_id, None))
    raise SsmError("InvocationDoesNotExist",
                   "An error occurred (InvocationDoesNotExist) when calling the "
                   "GetCommandInvocation operation")


def list_command_invocations(self):
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    details = bool(self._get_param("Details", False))
    commands = self.ssm_backend.list_commands(command_id, instance_id)
    out = []
    for c in commands:
        for inv in invocations(c):
            if instance_id in (None, inv.instance_id):
                out.append(inv.list_response(details))
    out.sort(key=lambda r: r["RequestedDateTime"], reverse=True)
    return ActionResult({"CommandInvocations": out})


def list_commands(self):
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    commands = self.ssm_backend.list_commands(command_id, instance_id)
    return ActionResult({"Commands": [command_response(c) for c in commands]})


def describe_instance_information(self):
    wanted = None
    for f in self._get_param("Filters", []) or []:
        if f.get("Key") == "InstanceIds":
            wanted = set(f.get("Values", []))
    for f in self._get_param("InstanceInformationFilterList", []) or []:
        if f.get("key") == "InstanceIds":
            wanted = set(f.get("valueSet", []))
    ec2 = ec2_backends[self.current_account][self.region]
    out = []
    for reservation in ec2.all_reservations():
        for instance in reservation.instances:
            if wanted is not None and instance.id not in wanted:
                continue
            if instance.state in ("terminated", "shutting-down"):
                continue
            bound = host_for(self.current_account, self.region, instance.id)
            if not bound:
                continue
            registered, online = agent_state(bound[0])
            if not registered:
                continue
            reg = read_json(os.path.join(bound[0], "ssm", "registration.json"))
            out.append({
                "InstanceId": instance.id,
                "PingStatus": "Online" if online else "ConnectionLost",
                "LastPingDateTime": now() if online else reg["at"],
                "AgentVersion": reg.get("agent_version", "3.3.0.0"),
                "IsLatestVersion": False,
                "PlatformType": "Linux",
                "PlatformName": "CentOS Linux",
                "PlatformVersion": "7.9.2009",
                "ResourceType": "EC2Instance",
                "IPAddress": instance.private_ip,
                "ComputerName": reg.get("hostname", instance.id),
                "AssociationStatus": "Success",
            })
    return ActionResult({"InstanceInformationList": out})


# --- EC2 -------------------------------------------------------------------------------------

_original_console_output = ec2_general.General.get_console_output


def get_console_output(self):
    instance_id = self._get_param("InstanceId")
    bound = host_for(self.current_account, self.region, instance_id)
    if not bound:
        return _original_console_output(self)
    instance = self.ec2_backend.get_instance(instance_id)
    text = read(os.path.join(bound[0], "console.log"), b"")
    result = {"InstanceId": instance.id, "Timestamp": now()}
    if text:
        # EC2 returns the console base64-encoded; with no output yet the field is absent.
        result["Output"] = base64.b64encode(text).decode()
    return ActionResult(result)


# --- Service Quotas ----------------------------------------------------------------------

# The quotas poscloud reads: (service, code) → what AWS's default answer holds.
QUOTA_DEFAULTS = {
    ("vpc", "L-F678F1CE"): {"QuotaName": "VPCs per Region",
                            "ServiceName": "Amazon Virtual Private Cloud (Amazon VPC)",
                            "Value": 5.0},
    ("ec2", "L-0263D0A3"): {"QuotaName": "EC2-VPC Elastic IPs",
                            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                            "Value": 5.0},
}
# (account, region, service, code) → the requests filed, oldest first.
QUOTA_REQUESTS = {}
OPEN_STATUSES = ("PENDING", "CASE_OPENED")
CASE_NUMBERS = [17000000000]


def quota_body(resp, service, code, value):
    d = QUOTA_DEFAULTS[(service, code)]
    return {
        "ServiceCode": service, "ServiceName": d["ServiceName"],
        "QuotaArn": f"arn:aws:servicequotas:{resp.region}:{resp.current_account}:{service}/{code}",
        "QuotaCode": code, "QuotaName": d["QuotaName"], "Value": float(value),
        "Unit": "None", "Adjustable": True, "GlobalQuota": False,
    }


def quota_params(resp):
    p = json.loads(resp.body or "{}")
    service, code = p.get("ServiceCode"), p.get("QuotaCode")
    if (service, code) not in QUOTA_DEFAULTS:
        raise JsonRESTError("NoSuchResourceException",
                            f"The quota {service}/{code} does not exist in the rig.")
    return p, service, code


def applied_quota(resp, service, code):
    """The value the AWS model file applies to the account, or None (AWS's default holds)."""
    q = aws_model.model().get("quotas", {})
    for key in (f"{resp.region}/{service}/{code}", f"{service}/{code}"):
        if key in q:
            return q[key]
    return None


def get_service_quota(self):
    _, service, code = quota_params(self)
    value = applied_quota(self, service, code)
    if value is None:
        # A quota the account never changed has no applied value.
        raise JsonRESTError("NoSuchResourceException",
                            "The request failed because the specified resource does not exist.")
    return json.dumps({"Quota": quota_body(self, service, code, value)})


def get_aws_default_service_quota(self):
    _, service, code = quota_params(self)
    value = QUOTA_DEFAULTS[(service, code)]["Value"]
    return json.dumps({"Quota": quota_body(self, service, code, value)})


def request_body(resp, r):
    d = QUOTA_DEFAULTS[(r["service"], r["code"])]
    return {
        "Id": r["id"], "CaseId": r["case"], "ServiceCode": r["service"],
        "ServiceName": d["ServiceName"], "QuotaCode": r["code"], "QuotaName": d["QuotaName"],
        "DesiredValue": float(r["desired"]), "Status": r["status"],
        "Created": r["created"], "LastUpdated": r["updated"],
        "Requester": f"arn:aws:iam::{resp.current_account}:user/poscloud",
        "QuotaArn": f"arn:aws:servicequotas:{resp.region}:{resp.current_account}:"
                    f"{r['service']}/{r['code']}",
        "GlobalQuota": False, "Unit": "None",
    }


def request_service_quota_increase(self):
    p, service, code = quota_params(self)
    desired = p.get("DesiredValue")
    if not isinstance(desired, (int, float)) or desired <= 0:
        raise JsonRESTError("IllegalArgumentException", "DesiredValue must be a positive number.")
    key = (self.current_account, self.region, service, code)
    with LOCK:
        requests = QUOTA_REQUESTS.setdefault(key, [])
        if any(r["status"] in OPEN_STATUSES for r in requests):
            raise JsonRESTError("ResourceAlreadyExistsException",
                                "Only one open service quota increase request is allowed per quota.")
        t = time.time()
        r = {"id": os.urandom(16).hex(), "case": None, "service": service, "code": code,
             "desired": desired, "status": "PENDING", "created": t, "updated": t}
        requests.append(r)
    return json.dumps({"RequestedQuota": request_body(self, r)})


def list_requested_service_quota_change_history_by_quota(self):
    p, service, code = quota_params(self)
    key = (self.current_account, self.region, service, code)
    with LOCK:
        requests = QUOTA_REQUESTS.get(key, [])
        for r in requests:
            if r["status"] == "PENDING":
                # AWS opens a support case for the request right after it is filed.
                CASE_NUMBERS[0] += 1
                r["status"], r["updated"] = "CASE_OPENED", time.time()
                r["case"] = str(CASE_NUMBERS[0])
        out = [request_body(self, r) for r in requests
               if p.get("Status") in (None, r["status"])]
    return json.dumps({"RequestedQuotas": out})


_original_parse_timestamp = ec2_amis.parse_timestamp


def parse_timestamp(value):
    """moto parses the AMI fixture's creation dates in place when a region's EC2 backend is
    made, so the second region's backend met datetimes and failed every call there; a date
    parsed already is kept."""
    if isinstance(value, datetime.datetime):
        return value
    return _original_parse_timestamp(value)


def patch():
    ec2_amis.parse_timestamp = parse_timestamp
    r = ssm_responses.SimpleSystemManagerResponse
    r.send_command = send_command
    r.get_command_invocation = get_command_invocation
    r.list_command_invocations = list_command_invocations
    r.list_commands = list_commands
    r.describe_instance_information = describe_instance_information
    ec2_general.General.get_console_output = get_console_output
    q = sq_responses.ServiceQuotasResponse
    q.get_service_quota = get_service_quota
    q.get_aws_default_service_quota = get_aws_default_service_quota
    q.request_service_quota_increase = request_service_quota_increase
    q.list_requested_service_quota_change_history_by_quota = \
        list_requested_service_quota_change_history_by_quota


def main():
    global HOSTS
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--hosts")
    p.add_argument("--aws-model")
    known, rest = p.parse_known_args()
    if known.hosts:
        HOSTS = known.hosts
    patch()
    aws_model.install(known.aws_model)
    server.main(rest)


if __name__ == "__main__":
    sys.exit(main())
