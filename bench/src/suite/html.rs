pub fn render(_r: &super::report::Report) -> String {
    String::new()
}
