//! httpscope: see every HTTP exchange on a host.
fn main() {
    println!("httpscope: under construction");
}
