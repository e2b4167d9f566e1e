// The printable penalty sheet's "Imprimir" button (no inline script under the workspace's CSP).
"use strict";
const printButton = document.getElementById("print");
if (printButton) printButton.addEventListener("click", () => window.print());
