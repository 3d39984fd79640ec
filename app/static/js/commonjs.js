// vendor/anser.js is published only as CommonJS (`module.exports = Anser`).  This
// gives that classic script a `module` to fill in; js/ansi.js takes the export and
// removes the global again, so the vendored file stays byte for byte as published.
window.module = { exports: {} };
