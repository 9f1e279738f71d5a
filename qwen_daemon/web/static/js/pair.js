// @ts-check
// The pairing confirmation page: the code moves from the address bar into the form at once, so it
// is not left in this tab's history or shown over a shoulder; the button's POST spends it.
history.replaceState(null, "", "/pair");
