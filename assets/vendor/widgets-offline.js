// Written for this project (not from npm): glue between the vendored widget manager and the page.
// Loaded by myst-nb before require.js and html-manager/embed-amd.js (see nb_ipywidgets_js in _config.yml).
(function () {
  "use strict";
  // 1. embed-amd.js puts the Font Awesome fonts of its CSS next to its AMD module ids
  //    (@jupyter-widgets/...), which require.js resolves against the page: <page>/@jupyter-widgets/.
  //    Map those ids to the vendored folder. A `require` object defined before require.js loads is
  //    its initial configuration.
  var here = document.currentScript && document.currentScript.src;
  if (here && typeof window.require === "undefined") {
    var manager = new URL("html-manager", here).href;
    window.require = {
      paths: { "@jupyter-widgets/html-manager/dist": manager, "@jupyter-widgets": manager },
    };
  }
  // 2. The widgets typeset labels with MathJax 2's MathJax.Hub.Queue (without it they throw); the
  //    book ships MathJax 3.
  //    Widgets render on window load, after the deferred MathJax script has run, so add the old
  //    entry point then (this listener is registered before embed-amd.js registers its own).
  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || typeof mj.typesetPromise !== "function") return;
    mj.Hub = {
      Queue: function (job) {
        var element = Array.isArray(job) ? job[2] : undefined;
        if (element && element.classList) {
          // myst-nb marks notebook pages mathjax_ignore: opt the label back in, and turn the
          // $...$ that widget labels use into the delimiters the book's MathJax 3 knows.
          element.classList.add("mathjax_process");
          if (element.children.length === 0 && element.textContent.indexOf("$") !== -1) {
            element.textContent = element.textContent
              .replace(/\$\$([^$]+)\$\$/g, "\\[$1\\]")
              .replace(/\$([^$]+)\$/g, "\\($1\\)");
          }
        }
        mj.startup.promise
          .then(function () { return mj.typesetPromise(element ? [element] : undefined); })
          .catch(function (err) { console.warn("MathJax typeset failed:", err); });
      },
    };
  });
})();
