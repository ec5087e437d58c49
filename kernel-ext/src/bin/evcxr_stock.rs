fn main() -> anyhow::Result<()> {
    evcxr_jupyter::main()
}
