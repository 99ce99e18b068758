//! A WASI command (`wasi:cli/run`), not a `switchyard:handler` component.
fn main() {
    println!("I am a command, not an event handler");
}
