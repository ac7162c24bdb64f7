"""A loopback stand-in for the Hugging Face Hub's HTTP API: enough of it for huggingface_hub to create a model or Space
repo, commit files to it (create_commit, which upload_folder and push_to_hub use too) and download them again
(snapshot_download, hf_hub_download), so the project's real Hub code runs offline against
`HF_ENDPOINT=http://127.0.0.1:PORT`.

Repos live in memory: every commit is a new immutable snapshot named by a 40-hex sha, `main` points at the newest.
Errors carry the Hub's `X-Error-Code` header (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), which the
client turns into its own exception types. Every request is logged (method, path) for tests to inspect.

Large files follow the Hub's rule: a file that the repo's .gitattributes sends to LFS (as a new repo's does for
*.safetensors, *.png, ...), that is binary, or that is over 10 MiB must go through the LFS batch API; a commit that
carries one inline is refused, as the Hub refuses such a push. Xet storage is not imitated: clients run with
HF_HUB_DISABLE_XET=1, which makes huggingface_hub use the LFS protocol (the Hub still accepts it).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

KIND = r"(?P<kind>models|spaces)"
REPO = r"(?P<repo>[^/]+/[^/]+)"
REV = r"(?P<rev>[^/]+)"
MAX_INLINE = 10 * 1024 * 1024
NEW_REPO_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _binary(sample: bytes) -> bool:
    return b"\0" in sample


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)   # sha -> {path: content}
    lfs: dict[str, set[str]] = field(default_factory=dict)               # sha -> paths stored in LFS
    refs: dict[str, str] = field(default_factory=dict)                   # branch -> sha

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev)
        return self.refs.get(rev) or (rev if rev in self.commits else None)

    def lfs_patterns(self, rev: str = "main") -> list[str]:
        attrs = self.commits.get(self.resolve(rev) or "", {}).get(".gitattributes", b"").decode()
        return [line.split()[0] for line in attrs.splitlines() if "filter=lfs" in line]

    def needs_lfs(self, path: str, size: int, sample: bytes, rev: str = "main") -> bool:
        return (any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in self.lfs_patterns(rev))
                or size > MAX_INLINE or _binary(sample))

    def commit(self, files: dict[str, bytes], deleted=(), branch: str = "main", lfs=()) -> str:
        parent_sha = self.refs.get(branch, "")
        parent = self.commits.get(parent_sha, {})
        tree = {p: d for p, d in parent.items() if p not in deleted} | files
        sha = hashlib.sha1(json.dumps(sorted((p, git_blob_id(d)) for p, d in tree.items())).encode()
                           + str(len(self.commits)).encode()).hexdigest()
        self.commits[sha] = tree
        self.lfs[sha] = (self.lfs.get(parent_sha, set()) - set(files) - set(deleted)) | set(lfs)
        self.refs[branch] = sha
        return sha


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}        # "user/name" for models, "spaces/user/name" for Spaces
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, as uploaded through the LFS batch API
        self.requests: list[tuple[str, str]] = []
        self.gated = False   # refuse file downloads as the Hub does for a gated repo the token may not read
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def downloads(self) -> list[str]:
        """Paths of the files fetched with GET (resolve URLs), in order."""
        return [p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p in self.requests if m == "GET" and "/resolve/" in p]

    def tree(self, key: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.repos[key]
        return repo.commits[repo.resolve(rev)]

    # ------------------------------------------------------------------ routes
    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):   # quiet: tests read hub.requests instead
                pass

            def _route(self, method: str) -> None:
                path = urlsplit(self.path).path
                hub.requests.append((method, path))
                body = (self.rfile.read(int(self.headers.get("Content-Length") or 0))
                        if method in ("POST", "PUT") else b"")
                for methods, pattern, fn in ROUTES:
                    if method in methods and (m := re.fullmatch(pattern, path)):
                        args = m.groupdict()
                        if "repo" in args:   # models are keyed by their id, Spaces as spaces/id
                            args["repo"] = ("spaces/" if args.pop("kind", "models") == "spaces" else "") + args["repo"]
                        return fn(self, hub, body=body, head=method == "HEAD", **args)
                self.reply(404, {"error": f"no route for {method} {path}"}, code="EntryNotFound")

            do_GET = lambda self: self._route("GET")     # noqa: E731
            do_HEAD = lambda self: self._route("HEAD")   # noqa: E731
            do_POST = lambda self: self._route("POST")   # noqa: E731
            do_PUT = lambda self: self._route("PUT")     # noqa: E731

            def reply(self, status: int, payload=None, *, data: bytes | None = None, headers=None, code=None,
                      head: bool = False) -> None:
                data = json.dumps(payload).encode() if data is None else data
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if payload is not None else "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                if code:
                    self.send_header("X-Error-Code", code)
                    self.send_header("X-Error-Message", code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        return Handler


def _repo_or_404(h, hub: FakeHub, repo: str) -> Repo | None:
    if repo not in hub.repos:
        h.reply(404, {"error": f"Repository {repo} not found"}, code="RepoNotFound")
        return None
    return hub.repos[repo]


def _commit_or_404(h, hub: FakeHub, repo: str, rev: str) -> tuple[str, dict[str, bytes]] | None:
    r = _repo_or_404(h, hub, repo)
    if r is None:
        return None
    sha = r.resolve(rev)
    if sha is None:
        h.reply(404, {"error": f"Invalid rev id: {rev}"}, code="RevisionNotFound")
        return None
    return sha, r.commits[sha]


def post_create(h, hub: FakeHub, body: bytes, **_):
    req = json.loads(body)
    repo = f"{req.get('organization') or 'user'}/{req['name']}"
    if req.get("type") == "space" and req.get("sdk") not in ("gradio", "streamlit", "docker", "static"):
        return h.reply(400, {"error": "A Space needs an SDK"})
    key = ("spaces/" if req.get("type") == "space" else "") + repo
    if key in hub.repos:
        return h.reply(409, {"error": "You already created this repo", "url": f"{hub.endpoint}/{key}"})
    hub.repos[key] = Repo()
    hub.repos[key].commit({".gitattributes": NEW_REPO_GITATTRIBUTES})
    h.reply(200, {"url": f"{hub.endpoint}/{key}", "name": repo, "id": repo})


def post_validate_yaml(h, hub: FakeHub, body: bytes, **_):
    """The card's front matter must be a YAML mapping (the Hub refuses a commit whose README.md's is not)."""
    import yaml

    content = json.loads(body)["content"]
    errors = []
    if content.startswith("---\n"):
        try:
            meta = yaml.safe_load(content.split("\n---", 2)[0][4:])
            if not isinstance(meta, dict):
                errors.append({"message": "the metadata is not a mapping"})
        except yaml.YAMLError as e:
            errors.append({"message": f"invalid YAML: {e}"})
    h.reply(400 if errors else 200, {"errors": errors, "warnings": []})


def get_info(h, hub: FakeHub, repo: str, rev: str = "main", **_):
    found = _commit_or_404(h, hub, repo, rev)
    if found:
        sha, tree = found
        name = repo.removeprefix("spaces/")
        h.reply(200, {"id": name, "modelId": name, "sha": sha, "private": False, "tags": [], "downloads": 0,
                      "likes": 0, "siblings": [{"rfilename": p} for p in sorted(tree)]})


def get_tree(h, hub: FakeHub, repo: str, rev: str, **_):
    found = _commit_or_404(h, hub, repo, rev)
    if found:
        sha, tree = found
        lfs = hub.repos[repo].lfs[sha]
        h.reply(200, [{"type": "file", "oid": git_blob_id(d), "size": len(d), "path": p}
                      | ({"lfs": {"oid": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}}
                         if p in lfs else {})
                      for p, d in sorted(tree.items())])


def get_resolve(h, hub: FakeHub, repo: str, rev: str, file: str, head: bool = False, **_):
    found = _commit_or_404(h, hub, repo, rev)
    if not found:
        return
    if hub.gated:
        return h.reply(403, {"error": f"Access to {repo} is restricted"}, code="GatedRepo", head=head)
    sha, tree = found
    file = unquote(file)
    if file not in tree:
        return h.reply(404, {"error": f"Entry not found: {file}"}, code="EntryNotFound", head=head,
                       headers={"X-Repo-Commit": sha})
    data = tree[file]
    headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'}
    if file in hub.repos[repo].lfs[sha]:   # the Hub names an LFS file by its sha256
        headers |= {"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))}
    h.reply(200, data=data, head=head, headers=headers)


def post_preupload(h, hub: FakeHub, repo: str, rev: str, body: bytes, **_):
    if _commit_or_404(h, hub, repo, rev):
        r = hub.repos[repo]
        files = json.loads(body)["files"]
        h.reply(200, {"files": [{"path": f["path"], "shouldIgnore": False,
                                 "uploadMode": "lfs" if r.needs_lfs(f["path"], f["size"], base64.b64decode(f["sample"]),
                                                                    rev) else "regular"}
                                for f in files]})


def post_lfs_batch(h, hub: FakeHub, repo: str, body: bytes, **_):
    if _repo_or_404(h, hub, repo) is None:
        return
    req = json.loads(body)
    if req.get("operation") != "upload" or "basic" not in req.get("transfers", ["basic"]):
        return h.reply(422, {"message": "this fake Hub takes basic LFS uploads only"})
    objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True}
               | ({} if o["oid"] in hub.lfs_objects else
                  {"actions": {"upload": {"href": f"{hub.endpoint}/lfs-upload/{o['oid']}", "header": {}}}})
               for o in req["objects"]]
    h.reply(200, {"transfer": "basic", "objects": objects})


def put_lfs_object(h, hub: FakeHub, oid: str, body: bytes, **_):
    if hashlib.sha256(body).hexdigest() != oid:
        return h.reply(400, {"error": "content does not match its sha256"})
    hub.lfs_objects[oid] = body
    h.reply(200, {})


def post_commit(h, hub: FakeHub, repo: str, rev: str, body: bytes, **_):
    if not _commit_or_404(h, hub, repo, rev):
        return
    r = hub.repos[repo]
    files, deleted, lfs = {}, set(), set()
    for line in body.decode().splitlines():
        op = json.loads(line)
        if op["key"] == "file":
            data = base64.b64decode(op["value"]["content"])
            if r.needs_lfs(op["value"]["path"], len(data), data[:512], rev):
                return h.reply(400, {"error": "Your push was rejected because it contains binary files or files "
                                              f"larger than 10 MiB: {op['value']['path']}. Please use LFS."})
            files[op["value"]["path"]] = data
        elif op["key"] == "lfsFile":
            oid = op["value"]["oid"]
            if oid not in hub.lfs_objects:
                return h.reply(400, {"error": f"LFS object {oid} was never uploaded"})
            files[op["value"]["path"]] = hub.lfs_objects[oid]
            lfs.add(op["value"]["path"])
        elif op["key"] in ("deletedFile", "deletedFolder"):
            deleted.add(op["value"]["path"])
    sha = r.commit(files, deleted, branch=unquote(rev), lfs=lfs)
    h.reply(200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})


ROUTES = [
    ({"POST"}, r"/api/repos/create", post_create),
    ({"POST"}, r"/api/validate-yaml", post_validate_yaml),
    ({"GET"}, rf"/api/{KIND}/{REPO}", get_info),
    ({"GET"}, rf"/api/{KIND}/{REPO}/revision/{REV}", get_info),
    ({"GET"}, rf"/api/{KIND}/{REPO}/tree/{REV}(?:/.*)?", get_tree),
    ({"POST"}, rf"/api/{KIND}/{REPO}/preupload/{REV}", post_preupload),
    ({"POST"}, rf"/api/{KIND}/{REPO}/commit/{REV}", post_commit),
    ({"POST"}, rf"/(?:(?P<kind>spaces)/)?{REPO}\.git/info/lfs/objects/batch", post_lfs_batch),
    ({"PUT"}, r"/lfs-upload/(?P<oid>[0-9a-f]{64})", put_lfs_object),
    ({"GET", "HEAD"}, rf"/(?:(?P<kind>spaces)/)?{REPO}/resolve/{REV}/(?P<file>.+)", get_resolve),
]
