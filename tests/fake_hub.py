"""A loopback stand-in for the Hugging Face Hub's HTTP API: enough of it for huggingface_hub to create a model repo,
commit files to it (create_commit, which upload_folder and push_to_hub use too) and download them again
(snapshot_download, hf_hub_download), so the project's real Hub code runs offline against
`HF_ENDPOINT=http://127.0.0.1:PORT`.

Repos live in memory: every commit is a new immutable snapshot named by a 40-hex sha, `main` points at the newest.
Errors carry the Hub's `X-Error-Code` header (RepoNotFound, RevisionNotFound, EntryNotFound), which the client turns
into its own exception types. Every request is logged (method, path) for tests to inspect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

REPO = r"(?P<repo>[^/]+/[^/]+)"
REV = r"(?P<rev>[^/]+)"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)   # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)                   # branch -> sha

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev)
        return self.refs.get(rev) or (rev if rev in self.commits else None)

    def commit(self, files: dict[str, bytes], deleted=(), branch: str = "main") -> str:
        parent = self.commits.get(self.refs.get(branch, ""), {})
        tree = {p: d for p, d in parent.items() if p not in deleted} | files
        sha = hashlib.sha1(json.dumps(sorted((p, git_blob_id(d)) for p, d in tree.items())).encode()
                           + str(len(self.commits)).encode()).hexdigest()
        self.commits[sha] = tree
        self.refs[branch] = sha
        return sha


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
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
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
                for methods, pattern, fn in ROUTES:
                    if method in methods and (m := re.fullmatch(pattern, path)):
                        return fn(self, hub, body=body, head=method == "HEAD", **m.groupdict())
                self.reply(404, {"error": f"no route for {method} {path}"}, code="EntryNotFound")

            do_GET = lambda self: self._route("GET")     # noqa: E731
            do_HEAD = lambda self: self._route("HEAD")   # noqa: E731
            do_POST = lambda self: self._route("POST")   # noqa: E731

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
    if repo in hub.repos:
        return h.reply(409, {"error": "You already created this model repo", "url": f"{hub.endpoint}/{repo}"})
    hub.repos[repo] = Repo()
    hub.repos[repo].commit({".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
    h.reply(200, {"url": f"{hub.endpoint}/{repo}", "name": repo, "id": repo})


def post_validate_yaml(h, hub: FakeHub, body: bytes, **_):
    """The model card's front matter must be a YAML mapping (the Hub refuses a commit whose README.md's is not)."""
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
        h.reply(200, {"id": repo, "modelId": repo, "sha": sha, "private": False, "tags": [], "downloads": 0,
                      "likes": 0, "siblings": [{"rfilename": p} for p in sorted(tree)]})


def get_tree(h, hub: FakeHub, repo: str, rev: str, **_):
    found = _commit_or_404(h, hub, repo, rev)
    if found:
        h.reply(200, [{"type": "file", "oid": git_blob_id(d), "size": len(d), "path": p}
                      for p, d in sorted(found[1].items())])


def get_resolve(h, hub: FakeHub, repo: str, rev: str, file: str, head: bool = False, **_):
    found = _commit_or_404(h, hub, repo, rev)
    if not found:
        return
    if hub.gated:
        return h.reply(403, {"error": f"Access to model {repo} is restricted"}, code="GatedRepo", head=head)
    sha, tree = found
    file = unquote(file)
    if file not in tree:
        return h.reply(404, {"error": f"Entry not found: {file}"}, code="EntryNotFound", head=head,
                       headers={"X-Repo-Commit": sha})
    data = tree[file]
    h.reply(200, data=data, head=head, headers={"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'})



def post_preupload(h, hub: FakeHub, repo: str, rev: str, body: bytes, **_):
    if _commit_or_404(h, hub, repo, rev):
        # "regular": every file travels base64-encoded inside the commit (no LFS or Xet storage to fake)
        files = json.loads(body)["files"]
        h.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})


def post_commit(h, hub: FakeHub, repo: str, rev: str, body: bytes, **_):
    if not _commit_or_404(h, hub, repo, rev):
        return
    files, deleted = {}, set()
    for line in body.decode().splitlines():
        op = json.loads(line)
        if op["key"] == "file":
            files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
        elif op["key"] in ("deletedFile", "deletedFolder"):
            deleted.add(op["value"]["path"])
        elif op["key"] == "lfsFile":
            return h.reply(400, {"error": "this fake Hub takes regular uploads only"})
    sha = hub.repos[repo].commit(files, deleted, branch=unquote(rev))
    h.reply(200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})


ROUTES = [
    ({"POST"}, r"/api/repos/create", post_create),
    ({"POST"}, r"/api/validate-yaml", post_validate_yaml),
    ({"GET"}, rf"/api/models/{REPO}", get_info),
    ({"GET"}, rf"/api/models/{REPO}/revision/{REV}", get_info),
    ({"GET"}, rf"/api/models/{REPO}/tree/{REV}(?:/.*)?", get_tree),
    ({"POST"}, rf"/api/models/{REPO}/preupload/{REV}", post_preupload),
    ({"POST"}, rf"/api/models/{REPO}/commit/{REV}", post_commit),
    ({"GET", "HEAD"}, rf"/{REPO}/resolve/{REV}/(?P<file>.+)", get_resolve),
]
