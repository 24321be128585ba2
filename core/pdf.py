"""HTML to PDF with WeasyPrint, safely: receipts and reports.

WeasyPrint's default URL fetcher follows any URL in the HTML (a file path, an internal address).
Ours loads only `data:` URIs: a refused URL raises inside the fetcher, which WeasyPrint logs and
skips (the resource is left out), so nothing in a name or an answer can make the renderer read
a file or reach the network. Rendering is CPU-bound and holds the GIL: callers run it in a
worker thread (a receipt, a tenth of a second) or a worker process (a report).
"""

from __future__ import annotations


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML, URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False, timeout=5)
    return HTML(string=html, url_fetcher=fetcher).write_pdf()
