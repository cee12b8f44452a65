"""Device registry, payload schemas, Modbus register maps and serial line parsers."""
