module grid.local/shim

go 1.24
