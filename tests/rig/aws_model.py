"""AWS's documented behaviour, modelled in front of moto (which is strongly consistent, makes
instances `running` at once and refuses few deletes). Loaded by emulator.py; every behaviour
is switched by the model file (emulator.py --aws-model FILE, re-read when it changes):

    {"list_lag": 1.0, "read_lag": 0.5, "write_lag": 0.3, "pending": 0.5,
     "shutting_down": 0.5, "eni_detach": 0.5, "iam_propagation": 0.5, "in_use": "alternate",
     "dependencies": true, "client_token": true, "termination_protection": true}

Times are seconds (0 = off). Without a file nothing is changed. Where each one is documented
is listed in tests/rig/README.md ("The AWS model").

- list_lag: a tag-filtered Describe (no ids named) leaves out what was created less than
  list_lag ago.
- read_lag: a Describe naming a new id answers its Invalid*.NotFound.
- write_lag: a write naming a new id (a CreateNetworkInterface naming a new group, an
  AttachInternetGateway naming a new VPC) answers its Invalid*.NotFound.
- pending / shutting_down: an instance is `pending` that long after RunInstances, and
  `shutting-down` that long after TerminateInstances, its interfaces attached until then.
- eni_detach: an interface the terminated instance did not delete (eth1) stays attached,
  and refuses its delete as in use, this long after the instance is `terminated`.
- iam_propagation: RunInstances naming an instance profile created or given its role less
  than this ago answers InvalidParameterValue (Invalid IAM Instance Profile name).
- in_use: how a delete of an attached interface is refused: "InvalidNetworkInterface.InUse",
  "InvalidParameterValue" (... is currently in use) or "alternate" (both, taking turns).
- dependencies: DependencyViolation for a security group with interfaces or instances in it,
  a subnet with interfaces, a VPC with an attached gateway or groups of its own, a gateway
  detach while addresses of the VPC are mapped; InvalidIPAddress.InUse for ReleaseAddress of
  an associated address; IncorrectInstanceState for AssociateAddress to a pending instance.
- client_token: RunInstances with a ClientToken seen before returns the first reservation
  when the parameters are the same and IdempotentParameterMismatch when they differ.
- termination_protection: RunInstances' DisableApiTermination is honoured (moto drops it).
"""

import hashlib
import json
import os
import re
import threading
import time
import xml.etree.ElementTree as ET

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import InstanceState
from moto.ec2.responses import EC2Response
from moto.iam.responses import IamResponse

MODEL_FILE = os.environ.get("POSCLOUD_RIG_AWS_MODEL", "")
# Requests signed with this access key (the tests' own checks) bypass the model.
TRUTH_KEY = "rig-truth"
LOCK = threading.RLock()

_model = {}
_model_stamp = None

# id → time of its create
CREATED = {}
PENDING_UNTIL = {}
SHUTTING_UNTIL = {}
# interface id → (its terminated instance, when AWS detaches it)
DETACH_AT = {}
# instance profile name → time it was created or got its role
PROFILE_CHANGED = {}
# ClientToken → (digest of the other parameters, the first answer)
TOKENS = {}
_in_use_turn = [0]

# The create calls and the id each answers with (RunInstances: every instance and interface).
CREATES = {
    "CreateVpc": "vpcId",
    "CreateInternetGateway": "internetGatewayId",
    "CreateSubnet": "subnetId",
    "CreateRouteTable": "routeTableId",
    "CreateSecurityGroup": "groupId",
    "CreateNetworkInterface": "networkInterfaceId",
    "AllocateAddress": "allocationId",
    "RunInstances": "instanceId|networkInterfaceId",
}

# id prefix → (error code, noun in the message)
KINDS = {
    "vpc": ("InvalidVpcID.NotFound", "The vpc ID '{}' does not exist"),
    "igw": ("InvalidInternetGatewayID.NotFound", "The internetGateway ID '{}' does not exist"),
    "subnet": ("InvalidSubnetID.NotFound", "The subnet ID '{}' does not exist"),
    "rtb": ("InvalidRouteTableID.NotFound", "The routeTable ID '{}' does not exist"),
    "sg": ("InvalidGroup.NotFound", "The security group '{}' does not exist"),
    "eni": ("InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '{}' does not exist"),
    "eipalloc": ("InvalidAllocationID.NotFound", "The allocation ID '{}' does not exist"),
    "i": ("InvalidInstanceID.NotFound", "The instance ID '{}' does not exist"),
}
ID = re.compile(r"^(vpc|igw|subnet|rtb|sg|eni|eipalloc|i)-[0-9a-f]+$")
# Describe parameters that name ids (VpcId.1, InstanceId, ...): NotFound, not left out.
NAMED_ID = re.compile(
    r"^(VpcId|SubnetId|InternetGatewayId|RouteTableId|GroupId|NetworkInterfaceId|AllocationId"
    r"|InstanceId)(\.\d+)?$")
# What a tag-filtered Describe lists: the item tag that holds each entry's own id.
LISTS = {
    "DescribeVpcs": "vpcId",
    "DescribeInternetGateways": "internetGatewayId",
    "DescribeSubnets": "subnetId",
    "DescribeRouteTables": "routeTableId",
    "DescribeSecurityGroups": "groupId",
    "DescribeNetworkInterfaces": "networkInterfaceId",
    "DescribeAddresses": "allocationId",
    "DescribeInstances": "instanceId",
}


def model():
    """The model file's settings (re-read when the file changes)."""
    global _model, _model_stamp
    if not MODEL_FILE:
        return {}
    try:
        st = os.stat(MODEL_FILE)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        return {}
    if stamp != _model_stamp:
        with open(MODEL_FILE) as f:
            text = f.read()
        _model = json.loads(text) if text.strip() else {}
        _model_stamp = stamp
    return _model


def setting(name, default=0):
    return model().get(name, default)


def fresh(id_, lag):
    t = CREATED.get(id_)
    return lag > 0 and t is not None and time.time() - t < lag


def not_found(id_):
    code, msg = KINDS[id_.split("-", 1)[0]]
    return EC2ClientError(code, msg.format(id_))


def backend(resp):
    return ec2_backends[resp.current_account][resp.region]


def params(resp):
    return {k: v for k, v in resp.querystring.items() if k not in ("Action", "Version")}


def param(resp, key):
    """One raw query parameter (the EC2 and IAM query protocols), or None."""
    return (resp.querystring.get(key) or [None])[0]


def multi(resp, prefix):
    """A query list (InstanceId.1, InstanceId.2, ...) in order."""
    keys = [k for k in resp.querystring if re.fullmatch(re.escape(prefix) + r"\.\d+", k)]
    return [param(resp, k) for k in sorted(keys, key=lambda k: int(k.rsplit(".", 1)[1]))]


def values(resp):
    for k, vs in params(resp).items():
        for v in vs:
            yield k, v


# --- instances -------------------------------------------------------------------------------

def advance(resp):
    """Instances whose pending or shutting-down time is over move on."""
    now = time.time()
    ec2 = backend(resp)
    for iid, until in list(PENDING_UNTIL.items()):
        if now >= until:
            del PENDING_UNTIL[iid]
            try:
                i = ec2.get_instance(iid)
            except Exception:
                continue
            if i._state.name == "pending":
                i._state = InstanceState("running", 16)
    for iid, until in list(SHUTTING_UNTIL.items()):
        if now >= until:
            del SHUTTING_UNTIL[iid]
            try:
                i = ec2.get_instance(iid)
            except Exception:
                continue
            i.terminate()
            # AWS detaches the interfaces it does not delete, a moment after the instance
            # is terminated (moto leaves them "attached" for good).
            for nic in list(i.nics.values()):
                if nic.id in ec2.enis and nic.instance is i:
                    DETACH_AT[nic.id] = (i, now + setting("eni_detach"))
    for nic_id, (i, at) in list(DETACH_AT.items()):
        if now >= at:
            del DETACH_AT[nic_id]
            nic = ec2.enis.get(nic_id)
            if nic is not None and nic.instance is i:
                i.detach_eni(nic)


def instance_state(ec2, iid):
    try:
        return ec2.get_instance(iid)._state.name
    except Exception:
        return None


def live(instance):
    return instance is not None and instance._state.name != "terminated"


def terminate(resp):
    """TerminateInstances that leaves the instance `shutting-down` for a while."""
    ec2 = backend(resp)
    ids = multi(resp, "InstanceId")
    items = []
    for iid in ids:
        i = ec2.get_instance(iid)
        if i.disable_api_termination:
            raise EC2ClientError(
                "OperationNotPermitted",
                f"The instance '{iid}' may not be terminated. Modify its 'disableApiTermination' "
                "instance attribute and try again.")
    for iid in ids:
        i = ec2.get_instance(iid)
        prev = (i._state.code, i._state.name)
        if i._state.name not in ("shutting-down", "terminated"):
            i._state = InstanceState("shutting-down", 32)
            SHUTTING_UNTIL[iid] = time.time() + setting("shutting_down")
        items.append(
            f"<item><instanceId>{iid}</instanceId><previousState><code>{prev[0]}</code>"
            f"<name>{prev[1]}</name></previousState><currentState><code>{i._state.code}</code>"
            f"<name>{i._state.name}</name></currentState></item>")
    body = ('<TerminateInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            "<requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>"
            f"<instancesSet>{''.join(items)}</instancesSet></TerminateInstancesResponse>")
    return 200, {"Content-Type": "text/xml"}, body


# --- checks before moto sees a call ----------------------------------------------------------

def in_use(eni_id):
    if setting("in_use", "alternate") == "alternate":
        _in_use_turn[0] += 1
        code = "InvalidNetworkInterface.InUse" if _in_use_turn[0] % 2 else "InvalidParameterValue"
    else:
        code = setting("in_use")
    if code == "InvalidParameterValue":
        return EC2ClientError(code, f"Network interface '{eni_id}' is currently in use.")
    return EC2ClientError(code, f"Interface: [{eni_id}] in use.")


def dependency(msg):
    return EC2ClientError("DependencyViolation", msg)


def check_dependencies(resp, action):
    ec2 = backend(resp)
    p = lambda k: param(resp, k)  # noqa: E731
    if action == "DeleteNetworkInterface":
        nic = ec2.enis.get(p("NetworkInterfaceId"))
        if nic is not None and (live(nic.instance) or nic.id in DETACH_AT):
            raise in_use(nic.id)
    elif action == "DeleteSecurityGroup":
        gid = p("GroupId")
        for nic in ec2.enis.values():
            if any(g.id == gid for g in nic.group_set):
                raise dependency(f"resource {gid} has a dependent object")
        for i in ec2.all_instances():
            if live(i) and any(g.id == gid for g in i.security_groups):
                raise dependency(f"resource {gid} has a dependent object")
    elif action == "DeleteSubnet":
        sid = p("SubnetId")
        if any(nic.subnet.id == sid for nic in ec2.enis.values()):
            raise dependency(f"The subnet '{sid}' has dependencies and cannot be deleted.")
    elif action == "DeleteVpc":
        vid = p("VpcId")
        attached = [g for g in ec2.internet_gateways.values() if g.vpc and g.vpc.id == vid]
        own_groups = [g for g in ec2.groups.get(vid, {}).values() if g.name != "default"]
        if attached or own_groups:
            raise dependency(f"The vpc '{vid}' has dependencies and cannot be deleted.")
    elif action == "DetachInternetGateway":
        vid = p("VpcId")
        mapped = [a for a in ec2.addresses
                  if a.eni is not None and a.eni.subnet.vpc_id == vid]
        if mapped:
            raise dependency(
                f"Network {vid} has some mapped public address(es). Please unmap those public "
                "address(es) before detaching the gateway.")
    elif action == "ReleaseAddress":
        alloc = p("AllocationId")
        for a in ec2.addresses:
            if a.allocation_id == alloc and (a.eni is not None or a.instance is not None):
                raise EC2ClientError("InvalidIPAddress.InUse", f"Address {alloc} is in use.")
    elif action == "AssociateAddress":
        nic = ec2.enis.get(p("NetworkInterfaceId") or "")
        inst = nic.instance if nic is not None else None
        if p("InstanceId"):
            try:
                inst = ec2.get_instance(p("InstanceId"))
            except Exception:
                inst = None
        if inst is not None and inst._state.name == "pending":
            raise EC2ClientError(
                "IncorrectInstanceState",
                f"The pending instance '{inst.id}' is not in a valid state for this operation.")


def profile_of(resp):
    arn = param(resp, "IamInstanceProfile.Arn")
    if arn:
        return arn.rsplit("/", 1)[-1], "arn", arn
    name = param(resp, "IamInstanceProfile.Name")
    return (name, "name", name) if name else (None, None, None)


def token_digest(resp):
    rest = sorted((k, v) for k, v in values(resp) if k != "ClientToken")
    return hashlib.sha256(json.dumps(rest).encode()).hexdigest()


def before_ec2(resp, action):
    """An answer instead of moto's (an error is raised), or None to let moto answer."""
    advance(resp)
    describe = action.startswith("Describe")
    for k, v in values(resp):
        if not ID.match(v) or k == "ClientToken":
            continue
        if describe and NAMED_ID.match(k) and fresh(v, setting("read_lag")):
            raise not_found(v)
        if not describe and fresh(v, setting("write_lag")):
            raise not_found(v)
    if setting("dependencies", False):
        check_dependencies(resp, action)
    if action == "RunInstances":
        name, how, given = profile_of(resp)
        t = PROFILE_CHANGED.get(name)
        lag = setting("iam_propagation")
        if t is not None and lag > 0 and time.time() - t < lag:
            label = "ARN" if how == "arn" else "name"
            raise EC2ClientError(
                "InvalidParameterValue",
                f"Value ({given}) for parameter iamInstanceProfile.{how} is invalid. Invalid IAM "
                f"Instance Profile {label}")
        token = param(resp, "ClientToken")
        if token and setting("client_token", False) and token in TOKENS:
            digest, answer = TOKENS[token]
            if digest != token_digest(resp):
                raise EC2ClientError(
                    "IdempotentParameterMismatch",
                    "Request parameters are inconsistent with a previous request that used "
                    "the same client token.")
            return answer
    if action == "TerminateInstances" and setting("shutting_down") > 0:
        return terminate(resp)
    return None


def after_ec2(resp, action, answer):
    status, headers, body = answer
    if status >= 300 or not isinstance(body, str):
        return answer
    now = time.time()
    if action in CREATES:
        for tag in CREATES[action].split("|"):
            for id_ in re.findall(f"<{tag}>([^<]+)</{tag}>", body):
                CREATED.setdefault(id_, now)
    if action == "RunInstances":
        ec2 = backend(resp)
        ids = re.findall(r"<instanceId>([^<]+)</instanceId>", body)
        protect = (param(resp, "DisableApiTermination") or "").lower() == "true"
        for iid in ids:
            i = ec2.get_instance(iid)
            if protect and setting("termination_protection", False):
                i.disable_api_termination = True
            if setting("pending") > 0 and i._state.name == "running":
                i._state = InstanceState("pending", 0)
                PENDING_UNTIL[iid] = now + setting("pending")
        if setting("pending") > 0:
            body = body.replace("<code>16</code>", "<code>0</code>").replace(
                "<name>running</name>", "<name>pending</name>")
        token = param(resp, "ClientToken")
        if token and setting("client_token", False):
            TOKENS.setdefault(token, (token_digest(resp), (status, headers, body)))
        return status, headers, body
    if action in LISTS and setting("list_lag") > 0:
        named = any(NAMED_ID.match(k) for k in params(resp))
        if not named:
            body = leave_out_new(body, LISTS[action], setting("list_lag"))
    return status, headers, body


def leave_out_new(body, id_tag, lag):
    """Drops from a list answer every entry whose own id (its direct child `id_tag`) was
    created less than `lag` ago; a reservation left with no instance is dropped too."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return body
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""

    def q(tag):
        return f"{{{ns}}}{tag}" if ns else tag

    changed = False

    def prune(entries):
        nonlocal changed
        for item in list(entries):
            own = item.find(q(id_tag))
            if own is not None and fresh(own.text, lag):
                entries.remove(item)
                changed = True

    if id_tag == "instanceId":
        reservations = root.find(q("reservationSet"))
        for r in list(reservations) if reservations is not None else []:
            instances = r.find(q("instancesSet"))
            if instances is not None:
                prune(instances)
                if len(instances) == 0:
                    reservations.remove(r)
    else:
        for child in root:
            if len(child) and all(c.tag == q("item") for c in child):
                prune(child)
    if not changed:
        return body
    ET.register_namespace("", ns)
    return ET.tostring(root, encoding="unicode")


def after_iam(resp, action, answer):
    status = answer[0]
    if status < 300 and action in ("CreateInstanceProfile", "AddRoleToInstanceProfile"):
        PROFILE_CHANGED[param(resp, "InstanceProfileName")] = time.time()
    return answer


# --- the hook --------------------------------------------------------------------------------

_original_call_action = BaseResponse.call_action


def error_answer(resp, e):
    status, headers, body = resp.serialized(ActionResult(e))
    headers["status"] = str(status)
    return status, headers, body


def truth(resp):
    """The tests' own clients sign with this access key and see moto as it is."""
    auth = resp.headers.get("Authorization", "") if resp.headers else ""
    return f"Credential={TRUTH_KEY}/" in auth


def call_action(self):
    if not model() or not isinstance(self, (EC2Response, IamResponse)) or truth(self):
        return _original_call_action(self)
    action = self._get_action()
    if isinstance(self, EC2Response):
        with LOCK:
            try:
                answer = before_ec2(self, action)
            except ServiceException as e:
                return error_answer(self, e)
            if answer is not None:
                return answer
            answer = _original_call_action(self)
            return after_ec2(self, action, answer)
    answer = _original_call_action(self)
    with LOCK:
        return after_iam(self, action, answer)


def install(model_file=None):
    global MODEL_FILE
    if model_file:
        MODEL_FILE = model_file
    BaseResponse.call_action = call_action
