// The printable record's "Imprimir" button (no inline script: the CSP forbids it).
"use strict";
document.getElementById("print-record")?.addEventListener("click", () => window.print());
