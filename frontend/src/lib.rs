//! The browser bundle: compiled to WASM by cargo-leptos, it hydrates the HTML the server
//! rendered, attaching the Control Room's reactive UI to it.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
