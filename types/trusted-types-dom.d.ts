// What the DOM lib does not say yet: the DOM APIs that take a Trusted Types value (the pages run
// under `require-trusted-types-for 'script'`, so they pass one). Per the Trusted Types spec.

interface ServiceWorkerContainer {
  register(scriptURL: string | URL | TrustedScriptURL, options?: RegistrationOptions): Promise<ServiceWorkerRegistration>;
}
