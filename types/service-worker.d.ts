// sw.js is a classic script whose global scope is a ServiceWorkerGlobalScope, but the WebWorker
// lib types `self` as the generic WorkerGlobalScope (a .js script cannot redeclare it, and a cast
// at every use would rewrite the worker). This file, part of tsconfig.sw.json only, adds the
// service worker's members and events to that scope, with the lib's own types.

interface WorkerGlobalScope {
  readonly clients: Clients;
  readonly registration: ServiceWorkerRegistration;
  skipWaiting(): Promise<void>;
  addEventListener<K extends keyof ServiceWorkerGlobalScopeEventMap>(
    type: K,
    listener: (this: WorkerGlobalScope, ev: ServiceWorkerGlobalScopeEventMap[K]) => any,
    options?: boolean | AddEventListenerOptions,
  ): void;
}
