from noisybench.cli import main

raise SystemExit(main())
