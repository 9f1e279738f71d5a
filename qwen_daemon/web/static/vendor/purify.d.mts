// The types of purify.mjs: the published ones of the same DOMPurify release.
export { default } from "dompurify";
