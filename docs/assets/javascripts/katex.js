// Typesets the maths that pymdownx.arithmatex marks up (generic mode: \( \) inline, \[ \] display) with the KaTeX
// that the build copies into assets/vendor/. Runs on every page load, including Material's instant navigation.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    const display = element.tagName === "DIV"
    const tex = element.textContent.trim().replace(/^\\[([]/, "").replace(/\\[)\]]$/, "")
    try {
      katex.render(tex, element, { displayMode: display, throwOnError: true, output: "htmlAndMathml" })
    } catch (error) {
      console.error(`KaTeX could not typeset ${JSON.stringify(tex)}: ${error.message}`)
    }
  }
})
