#!/bin/bash
# examples/cloudformation.yaml, read with a YAML loader that knows
# CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...): the Launch
# Template's metadata options, its user-data (scripts/user-data.sh verbatim
# but for its settings), the target group's health check, the ASG's
# lifecycle hooks (named as the user-data tells the agent), and an IAM
# policy that grants exactly what the agent and the user-data call, scoped.
. "$(dirname "$0")/lib.sh"
/usr/bin/python3 - "$SRC/examples/cloudformation.yaml" "$SRC/scripts/user-data.sh" <<'PY'
import re
import sys
import yaml

TAGS = ["Ref", "Sub", "GetAtt", "Join", "Base64", "Select", "Split", "If", "Equals", "Not", "And", "Or",
        "FindInMap", "ImportValue", "GetAZs", "Condition", "Cidr", "Transform"]


class CfnLoader(yaml.SafeLoader):
    pass


def tag(name):
    key = "Ref" if name == "Ref" else "Condition" if name == "Condition" else "Fn::" + name

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            v = loader.construct_scalar(node)
            if name == "GetAtt":
                v = v.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            v = loader.construct_sequence(node, deep=True)
        else:
            v = loader.construct_mapping(node, deep=True)
        return {key: v}
    return construct


for t in TAGS:
    CfnLoader.add_constructor("!" + t, tag(t))

errors = []


def check(cond, what):
    if not cond:
        errors.append(what)


t = yaml.load(open(sys.argv[1]), Loader=CfnLoader)
params, res = t["Parameters"], t["Resources"]
pseudo = {"AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix", "AWS::NoValue"}


def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "Ref":
                check(x in params or x in res or x in pseudo, "!Ref %s names nothing" % x)
            elif k == "Fn::GetAtt":
                check(x[0] in res, "!GetAtt %s names no resource" % x[0])
            elif k == "Fn::Sub" and isinstance(x, str):
                for ref in re.findall(r"\$\{([^!}][^}]*)\}", x):
                    check(ref.split(".")[0] in params or ref.split(".")[0] in res or ref in pseudo,
                          "!Sub ${%s} names nothing" % ref)
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)


walk(res)

by_type = {}
for name, r in res.items():
    by_type.setdefault(r["Type"], []).append((name, r["Properties"]))

# Launch Template: IMDSv2 only, one hop, tags in IMDS; this user-data.
(lt_name, lt), = by_type["AWS::EC2::LaunchTemplate"]
lt = lt["LaunchTemplateData"]
mo = lt["MetadataOptions"]
check(mo.get("HttpTokens") == "required", "HttpTokens: required")
check(mo.get("HttpPutResponseHopLimit") == 1, "HttpPutResponseHopLimit: 1")
check(mo.get("InstanceMetadataTags") == "enabled", "InstanceMetadataTags: enabled")
check(mo.get("HttpEndpoint", "enabled") == "enabled", "HttpEndpoint enabled")
ud = lt["UserData"]["Fn::Base64"]["Fn::Sub"]
check(ud.startswith("#!/bin/bash\n"), "user-data is a bash script")
script = open(sys.argv[2]).read()
settings = {}
want, got = [], []
for line in script.splitlines():
    if not re.match(r"^[A-Z_0-9]+=", line):
        want.append(line)
for line in ud.replace("${!", "${").splitlines():
    m = re.match(r'^([A-Z_0-9]+)="([^"]*)"', line)
    if m:
        settings[m.group(1)] = m.group(2)
    if not re.match(r"^[A-Z_0-9]+=", line):
        got.append(line)
if want != got:
    import difflib
    errors.append("the template's user-data is not scripts/user-data.sh:\n" +
                  "\n".join(difflib.unified_diff(want, got, "scripts/user-data.sh", "template", lineterm="", n=1)))
check(settings.get("PACKAGES", "").startswith("s3://${ArtifactBucket}/"), "packages come from the artifact bucket")

# Target group: the agent's /health on its port, 200 only.
(tg_name, tg), = by_type["AWS::ElasticLoadBalancingV2::TargetGroup"]
check(tg.get("HealthCheckPath") == "/health", "HealthCheckPath /health")
check(str(tg.get("HealthCheckPort")) == "8081", "HealthCheckPort 8081 (the agent's [health] listen)")
check(tg.get("HealthCheckProtocol") == "HTTP", "HealthCheckProtocol HTTP")
check(tg.get("Matcher", {}).get("HttpCode") == "200", "Matcher HttpCode 200 (503 means out)")
for k in ("HealthCheckIntervalSeconds", "HealthyThresholdCount", "UnhealthyThresholdCount",
          "HealthCheckTimeoutSeconds"):
    check(isinstance(tg.get(k), int), "%s set" % k)
check(tg["HealthCheckTimeoutSeconds"] < tg["HealthCheckIntervalSeconds"], "timeout below interval")
# The drain grace covers the time the ALB needs to see the 503s.
grace = int(settings.get("DRAIN_GRACE") or 0)
check(grace >= tg["UnhealthyThresholdCount"] * tg["HealthCheckIntervalSeconds"],
      "DRAIN_GRACE %d >= unhealthy threshold x interval" % grace)

# ASG: launch and terminate hooks, named as the agent is told.
(asg_name, asg), = by_type["AWS::AutoScaling::AutoScalingGroup"]
hooks = {h["LifecycleTransition"]: h for h in asg["LifecycleHookSpecificationList"]}
launch = hooks.get("autoscaling:EC2_INSTANCE_LAUNCHING")
term = hooks.get("autoscaling:EC2_INSTANCE_TERMINATING")
check(launch and launch["LifecycleHookName"] == settings.get("LAUNCH_HOOK"), "launch hook = LAUNCH_HOOK")
check(term and term["LifecycleHookName"] == settings.get("TERMINATE_HOOK"), "terminate hook = TERMINATE_HOOK")
check(launch and launch.get("DefaultResult") == "ABANDON", "a launch that never reports is abandoned")
check(asg.get("HealthCheckType") == "ELB", "the ASG replaces instances the ALB finds unhealthy")
check({"Ref": tg_name} in asg.get("TargetGroupARNs", []), "the ASG registers with the target group")
check(asg["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": lt_name}, "the ASG uses the launch template")

# IAM: exactly these actions, each on its own scoped resource.
(role_name, role), = by_type["AWS::IAM::Role"]
stmts = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
actions = {}
for s in stmts:
    check(s["Effect"] == "Allow", "only Allow statements")
    for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]):
        check("*" not in a, "no wildcard action: %s" % a)
        r = s["Resource"]
        actions[a] = r["Fn::Sub"] if isinstance(r, dict) else r
check(set(actions) == {"secretsmanager:GetSecretValue", "ssm:GetParameters", "ec2:DescribeTags",
                       "autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat",
                       "s3:GetObject"}, "the policy's actions: %s" % sorted(actions))
check(":secret:${SecretsPrefix}*" in actions.get("secretsmanager:GetSecretValue", ""), "secrets scoped")
check(":parameter${ParameterPath}*" in actions.get("ssm:GetParameters", ""), "parameters scoped")
for a in ("autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"):
    check(actions.get(a, "").endswith("autoScalingGroupName/${AWS::StackName}-web"), "%s scoped to the group" % a)
check(asg.get("AutoScalingGroupName") == {"Fn::Sub": "${AWS::StackName}-web"}, "the group has the policy's name")
check(actions.get("s3:GetObject", "").endswith(":::${ArtifactBucket}/anb-agent/*"), "packages scoped")
wild = [a for a, r in actions.items() if r == "*"]
check(wild == ["ec2:DescribeTags"], "only ec2:DescribeTags (no resource-level permission) on *: %s" % wild)

for e in errors:
    print("FAIL: " + e)
sys.exit(1 if errors else 0)
PY
echo OK
