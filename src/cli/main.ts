// Placeholder; the CLI lands with the config phase.
process.stdout.write("berth\n");
