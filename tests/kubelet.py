"""What the kubelet and the pod network make of rendered manifests, as far as the
deployment tests need it: volume files laid out with their ownership and modes,
the container's user and groups, read permission by the mode bits, and which
peers a NetworkPolicy admits.

The layout follows the kubelet's own code: the atomic writer puts a volume's
files in a `..<timestamp>` directory (0755) with the item's mode (`defaultMode`),
links `..data` to it and each key to `..data/<key>`; everything is root-owned.
With `fsGroup`, `SetVolumeOwnership` then gives every entry that group and adds
group read (plus search and setgid on directories: Secret and ConfigMap volumes
are read-only, so no write bits).
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

ROOT_ID = 0
TIMESTAMP_DIR = "..2026_01_01_00_00_00.000000001"
READ, SEARCH = 0o4, 0o1


@dataclass
class Node:
    kind: str  # "dir", "file" or "link"
    uid: int = ROOT_ID
    gid: int = ROOT_ID
    mode: int = 0o755
    data: bytes = b""
    target: str = ""  # a link's target, relative to its directory


@dataclass(frozen=True)
class Identity:
    """A container's process: uid, primary gid and supplementary groups."""

    uid: int
    gid: int
    groups: frozenset[int]

    @property
    def gids(self) -> frozenset[int]:
        return self.groups | {self.gid}


def identity(spec: Mapping[str, Any], container: Mapping[str, Any]) -> Identity:
    """Who a container runs as: its securityContext over the pod's; the pod's
    `fsGroup` and `supplementalGroups` are supplementary groups of every container."""
    pod = spec.get("securityContext", {})
    own = container.get("securityContext", {})
    uid = own.get("runAsUser", pod.get("runAsUser"))
    gid = own.get("runAsGroup", pod.get("runAsGroup", uid))
    groups = set(pod.get("supplementalGroups", ()))
    if "fsGroup" in pod:
        groups.add(pod["fsGroup"])
    return Identity(uid, gid, frozenset(groups))


def secret_files(secret: Mapping[str, Any]) -> dict[str, bytes]:
    files = {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
    files.update({k: v.encode() for k, v in secret.get("stringData", {}).items()})
    return files


@dataclass
class PodFiles:
    """The file tree a container sees, as a model (and on disk with `materialize`)."""

    nodes: dict[PurePosixPath, Node] = field(
        default_factory=lambda: {PurePosixPath("/"): Node("dir")}
    )

    def mount(
        self, mount_path: str, files: Mapping[str, bytes], mode: int, fs_group: int | None
    ) -> None:
        """A ConfigMap or Secret volume at `mount_path`, as the kubelet writes it."""
        target = PurePosixPath(mount_path)
        for parent in reversed(target.parents):  # mount points: made by the runtime
            self.nodes.setdefault(parent, Node("dir"))
        volume = [(target, Node("dir")), (target / TIMESTAMP_DIR, Node("dir"))]
        volume.append((target / "..data", Node("link", mode=0o777, target=TIMESTAMP_DIR)))
        for name, data in files.items():
            volume.append((target / TIMESTAMP_DIR / name, Node("file", mode=mode, data=data)))
            volume.append((target / name, Node("link", mode=0o777, target=f"..data/{name}")))
        for path, node in volume:
            if fs_group is not None:
                node.gid = fs_group
                if node.kind == "file":
                    node.mode |= 0o440
                elif node.kind == "dir":
                    node.mode |= stat.S_ISGID | 0o550
            self.nodes[path] = node

    def readable(self, path: str, who: Identity) -> bool:
        """Whether `who` can open `path` for reading (links followed, every directory
        on the way searched), by the mode bits as the kernel checks them."""
        resolved = self._walk(PurePosixPath(path), who, depth=0)
        return resolved is not None and _allows(self.nodes[resolved], who, READ)

    def _walk(self, path: PurePosixPath, who: Identity, depth: int) -> PurePosixPath | None:
        if depth > 8:
            return None
        current = PurePosixPath("/")
        for part in path.parts[1:]:
            if not _allows(self.nodes[current], who, SEARCH):
                return None
            current = current / part
            node = self.nodes.get(current)
            if node is None:
                return None
            if node.kind == "link":
                found = self._walk(current.parent / node.target, who, depth + 1)
                if found is None:
                    return None
                current = found
        return current

    def materialize(self, root: Path) -> None:
        """Write the tree under `root` with its owners and modes (owners need root)."""
        for path in sorted(self.nodes, key=lambda p: len(p.parts)):
            node, where = self.nodes[path], root / path.relative_to("/")
            if node.kind == "dir":
                where.mkdir(exist_ok=True)
            elif node.kind == "file":
                where.write_bytes(node.data)
            else:
                where.symlink_to(node.target)
            if os.geteuid() == ROOT_ID:
                os.lchown(where, node.uid, node.gid)
            if node.kind != "link":
                os.chmod(where, node.mode)


def _allows(node: Node, who: Identity, bit: int) -> bool:
    if who.uid == ROOT_ID:
        return True
    if node.uid == who.uid:
        return bool((node.mode >> 6) & bit)
    if node.gid in who.gids:
        return bool((node.mode >> 3) & bit)
    return bool(node.mode & bit)


# -- NetworkPolicy ---------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Where a connection comes from: a pod's labels and its namespace's labels."""

    namespace: str
    pod_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def admits(
    policies: list[Mapping[str, Any]],
    pod_labels: Mapping[str, str],
    ports: Mapping[str, int],
    port: int,
    peer: Peer,
    namespace: str,
) -> bool:
    """Whether a connection from `peer` to `port` of a pod in `namespace` is allowed:
    not isolated by any policy, or admitted by one rule of one selecting policy."""
    selecting = [
        p
        for p in policies
        if _selects(p["spec"]["podSelector"], pod_labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    return any(
        _rule_admits(rule, ports, port, peer, namespace)
        for policy in selecting
        for rule in policy["spec"].get("ingress", ())
    )


def _rule_admits(
    rule: Mapping[str, Any], ports: Mapping[str, int], port: int, peer: Peer, namespace: str
) -> bool:
    allowed_ports = rule.get("ports")
    if allowed_ports and not any(ports.get(p["port"], p["port"]) == port for p in allowed_ports):
        return False
    sources = rule.get("from")
    return not sources or any(_peer_matches(s, peer, namespace) for s in sources)


def _peer_matches(source: Mapping[str, Any], peer: Peer, namespace: str) -> bool:
    if "ipBlock" in source:
        return False  # pod traffic is judged by selectors here
    namespaces = source.get("namespaceSelector")
    in_namespace = (
        _selects(namespaces, peer.namespace_labels)
        if namespaces is not None
        else peer.namespace == namespace
    )
    return in_namespace and _selects(source.get("podSelector", {}), peer.pod_labels)


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
