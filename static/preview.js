// Draws a PDF record into canvases on our own page with the vendored pdf.js (pdfjs-dist
// 6.5.438 in static/vendor/pdfjs, see its README.txt). The bytes are fetched from the preview
// URL, whose response is sandboxed; nothing is framed. This pdf.js has no eval/Function code
// paths (the old `isEvalSupported` option went with them) and the page CSP forbids eval anyway;
// PDF scripts are never run (no scripting sandbox is loaded), and WebAssembly is off because the
// worker's CSP does not allow it: the JPEG 2000 and JBIG2 decoders use their JS fallbacks.
// Without JavaScript the page still offers the Download button.
import * as pdfjs from "/static/vendor/pdfjs/pdf.min.mjs";

const VENDOR = "/static/vendor/pdfjs/";
pdfjs.GlobalWorkerOptions.workerSrc = VENDOR + "pdf.worker.min.mjs";

async function show(viewer) {
  const status = viewer.querySelector("[data-pdf-status]");
  const pages = viewer.querySelector("[data-pdf-pages]");
  status.textContent = "Loading the PDF…";
  let pdf;
  try {
    pdf = await pdfjs.getDocument({
      url: viewer.dataset.src,
      disableRange: true, // one streamed, audited read per view
      useWasm: false,
      wasmUrl: VENDOR + "wasm/",
      standardFontDataUrl: VENDOR + "standard_fonts/",
      // Fonts a PDF names but does not embed are built from the fetched standard font data,
      // not loaded by url(): the page policy has no font-src.
      useSystemFonts: false,
      enableXfa: false,
      stopAtErrors: false,
    }).promise;
  } catch (error) {
    status.textContent =
      "This PDF could not be shown here (it may be damaged or protected). Please download it to read it.";
    viewer.dataset.pdfState = "failed";
    return;
  }
  const count = pdf.numPages;
  status.textContent = count === 1 ? "1 page." : count + " pages.";
  let next = 1;
  let busy = false;

  // Pages are drawn as they come near the screen: a long record is drawn only as far as read.
  const sentinel = document.createElement("div");
  sentinel.className = "pdf-sentinel";
  pages.after(sentinel);

  async function drawNext() {
    if (busy || next > count) return;
    busy = true;
    const number = next++;
    try {
      pages.append(await drawPage(number));
    } catch (error) {
      const note = document.createElement("p");
      note.className = "notice notice-warning";
      note.textContent = "Page " + number + " could not be shown. Download the file to read it.";
      pages.append(note);
    }
    busy = false;
    if (number === count) {
      viewer.dataset.pdfState = "rendered";
      observer.disconnect();
      sentinel.remove();
    } else if (isNear(sentinel)) {
      drawNext();
    }
  }

  async function drawPage(number) {
    const page = await pdf.getPage(number);
    const width = pages.clientWidth || 600;
    const scale = width / page.getViewport({ scale: 1 }).width;
    const ratio = Math.min(window.devicePixelRatio || 1, 2); // sharp, but bounded in memory
    const viewport = page.getViewport({ scale: scale * ratio });
    const canvas = document.createElement("canvas");
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    canvas.className = "pdf-page";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "Page " + number + " of " + count);
    await page.render({ canvas, viewport }).promise;
    page.cleanup();
    return canvas;
  }

  function isNear(element) {
    return element.getBoundingClientRect().top < window.innerHeight * 2;
  }

  const observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((entry) => entry.isIntersecting)) drawNext();
    },
    { rootMargin: "0px 0px 100% 0px" },
  );
  observer.observe(sentinel);
  drawNext();
}

for (const viewer of document.querySelectorAll("[data-pdf-viewer]")) {
  show(viewer);
}
