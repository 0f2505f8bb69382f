"""The page for people: areas, studies with search, a study's series with thumbnails, a
study as a ZIP, and deleting a study where the area is writable.

Server-rendered HTML, no script: every view is a plain link (searches are GET forms), so it
can be bookmarked and sent.  Searches run through the same search as QIDO-RS.
"""

from __future__ import annotations

import logging
import urllib.parse
from html import escape

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from pyqrscp.web.archive import WebArchive
from pyqrscp.web.qido import archive_of
from pyqrscp.web.search import BadSearch, build_search, run_search
from pyqrscp.web.settings import trusted_host
from pyqrscp.web.stored import stored_files
from pyqrscp.web.ziparchive import zip_stream

LOGGER = logging.getLogger(__name__)
MAX_LISTED = 500
MAX_FORM_BYTES = 4096
_STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.3em .7em;border-bottom:1px solid #ddd;
text-align:left;vertical-align:middle}th{background:#f4f4f4}a{color:#1456a0}
form.search input{margin-right:.6em}.series img{width:128px;height:128px;object-fit:contain;
background:#000}.danger{color:#a00}nav{margin-bottom:1em}"""
_SEARCH_FIELDS = (("PatientName", "Name"), ("PatientID", "Patient ID"),
                  ("StudyDate", "Date (YYYYMMDD or range)"), ("ModalitiesInStudy", "Modality"))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang=en><head><meta charset=utf-8>"
                        f"<title>{escape(title)} - pyqrscp</title><style>{_STYLE}</style>"
                        f"</head><body><nav><a href='/'>pyqrscp</a></nav><h1>{escape(title)}"
                        f"</h1>{body}</body></html>", status_code=status)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _name(text: str) -> str:
    return text.replace("^", " ").strip()


def areas(request: Request) -> HTMLResponse:
    """The AE titles of the AETable and what each allows."""
    archive = archive_of(request)
    rows = []
    for ae_title, entry in archive.entries.items():
        link = (f"<a href='/ui/{_q(ae_title)}'>{escape(ae_title)}</a>"
                if entry.access.can_query else escape(ae_title))
        rows.append(f"<tr><td>{link}</td><td>{escape(entry.access.name)}</td>"
                    f"<td>{_count_studies(archive, ae_title)}</td></tr>")
    return _page("Storage areas", "<table id=areas><tr><th>AE title</th><th>Access</th>"
                 f"<th>Studies</th></tr>{''.join(rows)}</table>")


def _count_studies(archive: WebArchive, ae_title: str) -> str:
    if not archive.entries[ae_title].access.can_query:
        return ""
    with archive.reader(ae_title) as db:
        return str(db.execute("SELECT COUNT(*) FROM study").fetchone()[0])


def _search_params(request: Request) -> list[tuple[str, str]]:
    """The form's fields as QIDO-RS keys; a name without wildcards matches as a prefix."""
    params = []
    for key, _label in _SEARCH_FIELDS:
        value = request.query_params.get(key, "").strip()
        if key == "PatientName" and value and "*" not in value and "?" not in value:
            value += "*"
        if value:
            params.append((key, value))
    return [*params, ("limit", str(MAX_LISTED))]


def studies(request: Request) -> HTMLResponse:
    """The studies of one area, searched by name, ID, date and modality."""
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    fields = "".join(
        f"<label>{escape(label)} <input name={key} "
        f"value='{escape(request.query_params.get(key, ''), quote=True)}'></label>"
        for key, label in _SEARCH_FIELDS)
    form = (f"<form class=search method=get>{fields}<button id=search type=submit>Search"
            "</button></form>")
    try:
        search = build_search("STUDY", _search_params(request), {})
        with archive.reader(ae_title) as db:
            found = list(run_search(db, search, archive.case_sensitive_pn))
    except (BadSearch, ValueError) as error:
        return _page(ae_title, form + f"<p class=danger>{escape(str(error))}</p>", 400)
    found.sort(key=lambda a: (a.get("StudyDate", ""), a.get("StudyTime", "")), reverse=True)
    rows = "".join(
        f"<tr class=study><td>{escape(_name(a.get('PatientName', '')))}</td>"
        f"<td>{escape(a.get('PatientID', ''))}</td><td>{escape(a.get('StudyDate', ''))}</td>"
        f"<td><a href='/ui/{_q(ae_title)}/studies/{_q(a['StudyInstanceUID'])}'>"
        f"{escape(a.get('StudyDescription', '') or a['StudyInstanceUID'])}</a></td>"
        f"<td>{escape(a.get('ModalitiesInStudy', '').replace(chr(92), ', '))}</td>"
        f"<td>{escape(a.get('NumberOfStudyRelatedSeries', ''))}</td>"
        f"<td>{escape(a.get('NumberOfStudyRelatedInstances', ''))}</td></tr>" for a in found)
    table = ("<table id=studies><tr><th>Patient</th><th>ID</th><th>Date</th><th>Study</th>"
             f"<th>Modalities</th><th>Series</th><th>Instances</th></tr>{rows}</table>")
    note = f"<p id=count>{len(found)} stud{'y' if len(found) == 1 else 'ies'}</p>"
    return _page(ae_title, form + note + table)


def study(request: Request) -> HTMLResponse:
    """One study: its patient, its series with thumbnails, download and delete."""
    ae_title, study_uid = request.path_params["aet"], request.path_params["study"]
    archive = archive_of(request)
    entry = archive.entry(ae_title, read=True)
    with archive.reader(ae_title) as db:
        about = list(run_search(db, build_search("STUDY", [], {"StudyInstanceUID": study_uid})))
        series = list(run_search(db, build_search(
            "SERIES", [("includefield", "BodyPartExamined")], {"StudyInstanceUID": study_uid})))
    if not about:
        raise HTTPException(404, "no such study in this area")
    facts = about[0]
    series.sort(key=lambda s: _number(s.get("SeriesNumber", "")))
    root = f"/dicomweb/{_q(ae_title)}/studies/{_q(study_uid)}"
    rows = "".join(
        f"<tr class=series><td><img alt='series {escape(s.get('SeriesNumber', ''))}' "
        f"src='{root}/series/{_q(s['SeriesInstanceUID'])}/thumbnail'></td>"
        f"<td>{escape(s.get('SeriesNumber', ''))}</td><td>{escape(s.get('Modality', ''))}</td>"
        f"<td>{escape(s.get('SeriesDescription', ''))}</td>"
        f"<td>{escape(s.get('NumberOfSeriesRelatedInstances', ''))}</td></tr>" for s in series)
    ui = f"/ui/{_q(ae_title)}/studies/{_q(study_uid)}"
    actions = f"<p><a id=download href='{ui}/zip'>Download as ZIP</a>"
    if entry.access.can_store:
        actions += f" · <a class=danger id=delete href='{ui}/delete'>Delete…</a>"
    body = (f"<p id=patient>{escape(_name(facts.get('PatientName', '')))} · "
            f"{escape(facts.get('PatientID', ''))} · {escape(facts.get('StudyDate', ''))} · "
            f"{escape(facts.get('StudyDescription', ''))}</p>{actions}</p>"
            "<table id=series><tr><th></th><th>Series</th><th>Modality</th><th>Description"
            f"</th><th>Instances</th></tr>{rows}</table>"
            f"<p><a href='/ui/{_q(ae_title)}'>All studies of {escape(ae_title)}</a></p>")
    return _page(f"Study {facts.get('StudyDescription', '') or study_uid}", body)


def _number(text: str) -> tuple[int, str]:
    try:
        return int(text), text
    except ValueError:
        return 1 << 30, text


def download(request: Request) -> Response:
    """The study's stored files in a ZIP, streamed as they are read."""
    ae_title, study_uid = request.path_params["aet"], request.path_params["study"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    with archive.reader(ae_title) as db:
        files = stored_files(db, archive.area(ae_title), study_uid)
    if not files:
        raise HTTPException(404, "no such study in this area")
    name = f"{study_uid}.zip"
    return StreamingResponse(zip_stream(files), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


def confirm_delete(request: Request) -> HTMLResponse:
    ae_title, study_uid = request.path_params["aet"], request.path_params["study"]
    archive_of(request).entry(ae_title, read=True, write=True)
    ui = f"/ui/{_q(ae_title)}/studies/{_q(study_uid)}"
    return _page("Delete this study?", f"<p>Study {escape(study_uid)} and every file of it "
                 f"will be deleted from {escape(ae_title)}.</p><form method=post>"
                 f"<input type=hidden name=confirm value='{escape(study_uid, quote=True)}'>"
                 f"<button id=confirm class=danger>Delete</button> <a href='{ui}'>Cancel</a>"
                 "</form>")


def _same_origin(request: Request, archive: WebArchive, origin: str) -> bool:
    """Whether a form's ``Origin`` is this page as the browser reached it: the same scheme
    and ``host[:port]`` as the request, a host the listener trusts (not the client's
    ``Host`` alone: a page rebound to 127.0.0.1 would send its own name in both)."""
    parts = urllib.parse.urlsplit(origin)
    host = request.headers.get("host", "")
    return (parts.scheme == request.url.scheme and parts.netloc.lower() == host.lower()
            and trusted_host(archive.settings, parts.netloc))


async def delete(request: Request) -> Response:
    """Delete a study (rows, then files, as ``pyqrscp rm``), from this page's own form."""
    ae_title, study_uid = request.path_params["aet"], request.path_params["study"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True, write=True)
    origin = request.headers.get("origin")
    if origin is not None and not _same_origin(request, archive, origin):
        raise HTTPException(403, "a deletion must come from this page")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "a deletion form is a few bytes")
    if urllib.parse.parse_qs(body.decode("latin-1")).get("confirm") != [study_uid]:
        raise HTTPException(400, "not confirmed")
    count, size = await run_in_threadpool(archive.area(ae_title).delete, "study", study_uid)
    client = request.client
    LOGGER.warning("Deleted study %s from %s (%d instance(s), %d bytes) on request of %s",
                   study_uid, ae_title, count, size, client.host if client else "?")
    return RedirectResponse(f"/ui/{_q(ae_title)}", status_code=303)


ROUTES = [
    Route("/", areas, methods=["GET"]),
    Route("/ui/{aet}", studies, methods=["GET"]),
    Route("/ui/{aet}/studies/{study}", study, methods=["GET"]),
    Route("/ui/{aet}/studies/{study}/zip", download, methods=["GET"]),
    Route("/ui/{aet}/studies/{study}/delete", confirm_delete, methods=["GET"]),
    Route("/ui/{aet}/studies/{study}/delete", delete, methods=["POST"]),
]
