//! The browser bundle: compiled to WASM by cargo-leptos, it hydrates the HTML the server
//! rendered. The page is islands: the server renders every panel, and only the islands (the
//! live console and the Task Monitor with its composer) are hydrated, so only their code ships.

// The islands are exported by `app` (one `_island_*` function each, which `hydrate_islands`
// calls for every island on the page): nothing here names them, so the crate is linked in
// explicitly.
extern crate app;

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
