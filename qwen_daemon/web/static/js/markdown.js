// @ts-check
// Agent text → safe HTML: markdown-it renders, DOMPurify sanitizes, Trusted Types enforce it.
//
// Three independent locks, so one mistake is not enough: markdown-it runs with html:false (raw
// HTML from the agent is shown as text) and refuses javascript:/vbscript:/data: links; DOMPurify
// then removes anything executable from what remains; and the page's CSP only lets DOMPurify's
// Trusted Types policy assign HTML at all. Images become links (the CSP would block remote loads,
// and a tracking pixel in agent output should not phone home).

import markdownit from "../vendor/markdown-it.min.mjs";
import DOMPurify from "../vendor/purify.mjs";

const md = markdownit({ html: false, linkify: true, breaks: false, typographer: false });

md.renderer.rules.image = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  const src = token.attrGet("src") || "";
  const alt = self.renderInlineAsText(token.children || [], options, env) || src;
  return `<a href="${md.utils.escapeHtml(src)}">${md.utils.escapeHtml(alt)}</a>`;
};

// wide tables scroll inside their own box instead of widening the page (phones)
md.renderer.rules.table_open = () => '<div class="table-wrap"><table>\n';
md.renderer.rules.table_close = () => "</table></div>\n";

// column alignment arrives as style="text-align:…", which the CSP forbids: use a class instead
for (const name of ["th_open", "td_open"]) {
  md.renderer.rules[name] = (tokens, idx, options, env, self) => {
    const token = tokens[idx];
    const style = token.attrGet("style");
    if (style) {
      // a style attribute was found above, so the token has attributes
      token.attrs = /** @type {[string, string][]} */ (token.attrs).filter(([key]) => key !== "style");
      const match = /text-align:\s*(left|right|center)/.exec(style);
      if (match) token.attrJoin("class", `align-${match[1]}`);
    }
    return self.renderToken(tokens, idx, options);
  };
}

const PURIFY = {
  FORBID_TAGS: ["style", "img", "svg", "math", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style", "id", "name"],
  RETURN_TRUSTED_TYPE: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/**
 * Render Markdown `text` into `target`, replacing what was there.
 * @param {Element} target
 * @param {string} text
 */
export function renderMarkdown(target, text) {
  target.innerHTML = DOMPurify.sanitize(md.render(text), PURIFY);
}
