// The types of markdown-it.min.mjs: DefinitelyTyped's for markdown-it.
export { default } from "markdown-it";
