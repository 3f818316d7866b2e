// Each diagram's SVG, once its <object> has loaded it, becomes part of the page itself: its
// text can be selected and found, and the page holds the drawing, not the Graphviz source.
window.addEventListener("load", () => {
  for (const object of document.querySelectorAll("object.graphviz")) {
    const svg = object.contentDocument && object.contentDocument.querySelector("svg");
    if (svg) object.replaceWith(document.importNode(svg, true));
  }
});
