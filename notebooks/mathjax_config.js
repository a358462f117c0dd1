// MathJax 3 configuration of the course website (Sphinx inlines this before loading MathJax: conf.py's
// mathjax_config_path). ipywidgets' HTML manager typesets widget labels with MathJax 2's one call,
// MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]) (jupyter-widgets/ipywidgets#3829), which MathJax 3
// no longer has; this gives MathJax 3 that call: labels typeset before MathJax is ready wait for it.
(() => {
  const waiting = [];
  const hub = {
    Queue: (job) => {
      const element = Array.isArray(job) ? job[2] : undefined;
      if (!element) return;
      if (window.MathJax && window.MathJax.typesetPromise) window.MathJax.typesetPromise([element]);
      else waiting.push(element);
    },
  };
  // Keep the configuration Sphinx wrote before this script (its processHtmlClass: the page body carries
  // mathjax_ignore, and only the formulas' own classes are processed; without it no formula is typeset).
  const sphinx = window.MathJax || {};
  window.MathJax = {
    ...sphinx,
    Hub: hub, // while MathJax loads (it replaces this object with its own)
    startup: {
      ...(sphinx.startup || {}),
      ready() {
        window.MathJax.startup.defaultReady();
        window.MathJax.Hub = hub; // once it is ready
        if (waiting.length) window.MathJax.typesetPromise(waiting.splice(0));
      },
    },
  };
})();
